"""Seeding for repeatable training runs (nnU-Net itself seeds nothing)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed Python's, NumPy's and torch's global generators (and cuDNN's kernel choice on a GPU).

    nnU-Net's patch sampling and batchgeneratorsv2's augmentations draw from NumPy's and torch's global
    generators, in the training process when augmentation is single-threaded (``nnUNet_n_proc_DA=0``).
    """
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True

