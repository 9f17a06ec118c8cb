"""What every kt-nnunet transfer trainer shares: stock-loadable checkpoints and a provenance record.

On top of ``nnUNetTrainerKTBudget`` (training length from the plans key ``kt_budget``; safe, atomic
checkpoints):

* checkpoints (``nnUNetTrainerKTBudget.save_checkpoint``): nnU-Net writes ``trainer_name = type(self).__name__``
  and ``nnUNetv2_predict`` resolves that name with its trainer lookup, which only finds our classes when
  ``nnUNet_extTrainer`` is set. A trainer that does not override ``build_network_architecture``
  builds exactly the network ``nnUNetTrainer`` builds (the plans name the architecture), so the
  checkpoint names ``nnUNetTrainer`` and stock prediction works with or without ``nnUNet_extTrainer``.
  The real class is kept under ``kt_trainer_name``.
* ``on_train_start``: writes ``kt_provenance.json`` into the model folder, from ``kt_provenance()``,
  which each trainer extends (teacher-labelled dataset, teachers, fine-tuning source).
"""
from __future__ import annotations

from pathlib import Path

from kt_nnunet import __version__
from kt_nnunet.atomic_files import atomic_write_json
from kt_nnunet.training.budget import STOCK_TRAINER_NAME, nnUNetTrainerKTBudget, stock_trainer_name  # noqa: F401

PROVENANCE_FILE = "kt_provenance.json"


class nnUNetTrainerKTBase(nnUNetTrainerKTBudget):
    """Budget trainer that records what it was trained from (``kt_provenance.json``)."""

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
            atomic_write_json(Path(self.output_folder_base) / PROVENANCE_FILE, self.kt_provenance(), default=str)
