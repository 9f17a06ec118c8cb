"""Folder searched by nnU-Net through ``nnUNet_extTrainer`` (see kt_trainers.py)."""
from pathlib import Path

EXT_TRAINER_FOLDER = Path(__file__).resolve().parent
