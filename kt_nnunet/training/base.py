"""What every kt-nnunet transfer trainer shares: stock-loadable checkpoints and a provenance record.

Two seams on top of ``nnUNetTrainerKTBudget`` (training length from the plans key ``kt_budget``):

* ``save_checkpoint``: nnU-Net writes ``trainer_name = type(self).__name__`` into each checkpoint and
  ``nnUNetv2_predict`` resolves that name with its trainer lookup, which only finds our classes when
  ``nnUNet_extTrainer`` is set. A trainer that does not override ``build_network_architecture``
  builds exactly the network ``nnUNetTrainer`` builds (the plans name the architecture), so the
  checkpoint names ``nnUNetTrainer`` and stock prediction works with or without ``nnUNet_extTrainer``.
  The real class is kept under ``kt_trainer_name``.
* ``on_train_start``: writes ``kt_provenance.json`` into the model folder, from ``kt_provenance()``,
  which each trainer extends (teacher-labelled dataset, teachers, fine-tuning source).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from kt_nnunet import __version__
from kt_nnunet.nnunet.model_folder import load_checkpoint_safely
from kt_nnunet.training.budget import nnUNetTrainerKTBudget

PROVENANCE_FILE = "kt_provenance.json"
STOCK_TRAINER_NAME = "nnUNetTrainer"


def stock_trainer_name(trainer_class: type) -> str:
    """The name a checkpoint of ``trainer_class`` can carry so that stock nnU-Net rebuilds its network."""
    if trainer_class.build_network_architecture is nnUNetTrainer.build_network_architecture:
        return STOCK_TRAINER_NAME
    return trainer_class.__name__  # a custom network builder: prediction needs the real class


def write_json_atomically(path: Path, content: dict) -> None:
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(json.dumps(content, indent=2, default=str))
    os.replace(tmp, path)


class nnUNetTrainerKTBase(nnUNetTrainerKTBudget):
    """Budget trainer whose checkpoints stock ``nnUNetv2_predict`` loads without ``nnUNet_extTrainer``."""

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        name = stock_trainer_name(type(self))
        if self.local_rank != 0 or self.disable_checkpointing or name == type(self).__name__:
            return
        # Rewritten after nnU-Net's save (its method builds the dict inline); the file is our own, tensors only.
        checkpoint = load_checkpoint_safely(Path(filename))
        checkpoint["kt_trainer_name"] = checkpoint["trainer_name"]
        checkpoint["trainer_name"] = name
        tmp = f"{filename}.tmp"
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def kt_provenance(self) -> dict:
        """What this model was trained from; trainers add their own keys."""
        return {"kt_nnunet_version": __version__, "trainer": type(self).__name__,
                "checkpoint_trainer_name": stock_trainer_name(type(self)),
                "dataset": self.plans_manager.dataset_name, "plans": self.plans_manager.plans_name,
                "configuration": self.configuration_name,
                "architecture": self.configuration_manager.network_arch_class_name}

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            write_json_atomically(Path(self.output_folder_base) / PROVENANCE_FILE, self.kt_provenance())
