"""SegResNet for kt-nnunet, as an installable plugin package."""
