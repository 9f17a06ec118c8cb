"""MONAI's segmentation networks as kt-nnunet architectures, as an installable plugin package."""
