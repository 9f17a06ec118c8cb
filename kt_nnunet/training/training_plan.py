"""One training, planned: what ``prepare_training`` / ``prepare_transfer`` / ``prepare_finetune`` return and what
``train_plan`` trains.

A ``TrainingPlan`` names everything nnU-Net needs to train one model (dataset, configuration, plans name,
trainer, the plans file already written, pretrained weights), and nothing else, so it pickles: a job can carry it
to another process or a compute node and train it there from the object alone, given the same nnU-Net folders.
Planning (nnU-Net's planning and preprocessing, the plans file, the network contract check, teacher checks) is
done once, by the ``prepare_*`` function; training it is ``train_plan``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

BUDGET_TRAINER = "nnUNetTrainerKTBudget"
STOCK_TRAINER = "nnUNetTrainer"   # `kt-nnunet plan` without a budget or seed: nnU-Net's own trainer
# The trainers a plan may name, each a class of kt_nnunet.training (looked up by name, so a plan stays a
# few strings; anything else is refused rather than imported).
KT_TRAINERS = ("nnUNetTrainerKTBudget", "nnUNetTrainerKTOffline", "nnUNetTrainerKTOfflineSoft",
               "nnUNetTrainerKTOnline", "nnUNetTrainerKTOnlineSoft", "nnUNetTrainerKTFinetune",
               "nnUNetTrainerKTScratch")


@dataclass(frozen=True)
class TrainingPlan:
    dataset_name: str            # DatasetNNN_Name, planned and preprocessed
    configuration: str           # 2d, 3d_fullres, ...
    plans_name: str              # the plans file's name in nnUNet_preprocessed/DatasetNNN_Name/
    trainer: str                 # one of KT_TRAINERS, or STOCK_TRAINER
    architecture: str            # the registered architecture's name
    plans_file: Optional[Path] = None
    pretrained_weights: Optional[Path] = None   # fine-tuning: the student's checkpoint, all weights kept
    labelled_dataset: Optional[Path] = None     # a transfer that labelled its transferal set first: that dataset

    def model_folder(self) -> Path:
        """Where nnU-Net puts the model: ``nnUNet_results/DatasetX/TRAINER__PLANS__CONFIG``."""
        from kt_nnunet.nnunet.paths import results_folder

        return results_folder() / self.dataset_name / f"{self.trainer}__{self.plans_name}__{self.configuration}"

    def train_command(self, fold: int | str = 0, device: str = "cpu") -> str:
        """The stock ``nnUNetv2_train`` command that trains this plan (needs ``nnUNet_extTrainer``)."""
        weights = f" -pretrained_weights {self.pretrained_weights}" if self.pretrained_weights else ""
        return (f"nnUNetv2_train {self.dataset_name} {self.configuration} {fold} -p {self.plans_name} "
                f"-tr {self.trainer} -device {device}{weights}")

    def predict_command(self, images: str = "IMAGES", out: str = "OUT", fold: int | str = 0,
                        device: str = "cpu") -> str:
        # -tr picks the model folder TRAINER__PLANS__CONFIG that train_command fills; without it nnU-Net looks in
        # nnUNetTrainer__..., which does not exist when a kt-nnunet trainer trained the model.
        return (f"nnUNetv2_predict -i {images} -o {out} -d {self.dataset_name} -c {self.configuration} "
                f"-p {self.plans_name} -tr {self.trainer} -f {fold} -device {device}")


def trainer_class(name: str):
    """The kt-nnunet trainer class a plan names."""
    import importlib

    if name == STOCK_TRAINER:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        return nnUNetTrainer
    if name not in KT_TRAINERS:
        raise ValueError(f"a training plan names the trainer {name!r}, which is not one of {', '.join(KT_TRAINERS)}")
    return getattr(importlib.import_module("kt_nnunet.training"), name)


def check_training_options(force: bool, continue_training: bool, device: str, error: Optional[type] = None) -> str:
    """Refuse ``force`` with ``continue_training`` and a device torch cannot use (raising ``error``'s kind for the
    former), before the minutes that planning a training takes; returns the device's name."""
    from kt_nnunet.devices import parse_device
    from kt_nnunet.nnunet.training_api import TrainingError, check_fold_options

    check_fold_options(force, continue_training, error or TrainingError)
    return str(parse_device(device))


def train_plan(plan: TrainingPlan, *, fold: int | str = 0, device: str = "auto", continue_training: bool = False,
               force: bool = False, validate: bool = True, num_workers: Optional[int] = 0) -> Path:
    """Train (or, with ``continue_training``, resume) one fold of ``plan``; returns the model folder.

    A finished fold is kept unless ``force``. A fine-tuning plan starts from its pretrained weights, all of them
    (heads included: the label sets are equal); a resumed one starts from its own checkpoint instead.
    ``num_workers`` is nnU-Net's augmentation processes (0: in this process, the only reproducible order).
    """
    from kt_nnunet.nnunet.training_api import train_fold

    device = check_training_options(force, continue_training, device)
    weights = {} if continue_training or plan.pretrained_weights is None else {
        "pretrained_weights": str(plan.pretrained_weights), "pretrained_skip": ()}
    return train_fold(trainer_class(plan.trainer), plan.dataset_name, plan.configuration, fold, plan.plans_name,
                      device, continue_training=continue_training, force=force, validate=validate,
                      num_workers=num_workers, **weights)
