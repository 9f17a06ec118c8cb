"""The one adapter over nnunetv2: everything that touches nnU-Net internals lives in this package."""
