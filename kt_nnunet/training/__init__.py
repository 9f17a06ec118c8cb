"""nnU-Net trainer variants (small nnUNetTrainer subclasses, one seam each)."""
