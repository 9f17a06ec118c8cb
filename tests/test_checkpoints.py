"""Checkpoints: a checkpoint that would run code is refused (on ``--continue`` too), a crash while saving leaves the
previous one, a torn checkpoint_latest.pth falls back to checkpoint_best.pth or a fresh start, and the budget
trainer's checkpoints name the stock trainer. Nothing trains (tests/budget_trainers.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from budget_trainers import DATASET, PLANS_NAME, budget_trainer  # noqa: F401  (fixture)


class _WritesMarker:
    """Unpickling this runs ``open(marker, 'w')``: what a planted checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {}, "payload": _WritesMarker(marker)}, path)


def test_a_planted_pickle_in_checkpoint_latest_is_refused_on_continue(budget_trainer, tmp_path):
    """``--continue`` unpickled a fold's checkpoint_latest.pth with weights_only=False (code execution)."""
    from kt_nnunet.nnunet.model_folder import ModelFolderError
    from kt_nnunet.nnunet.training_api import train_fold
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    fold = Path(budget_trainer().output_folder)
    marker = tmp_path / "pwned"
    _plant_pickle(fold / "checkpoint_latest.pth", marker)
    with pytest.raises(ModelFolderError, match=r"refused to load .*checkpoint_latest\.pth.*allow-list"):
        train_fold(nnUNetTrainerKTBudget, DATASET, "2d", 0, PLANS_NAME, continue_training=True, validate=False)
    assert not marker.exists()


class _RunsOsSystem:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_pickle_calling_os_system_is_refused_as_code_not_corrupt(tmp_path):
    """torch 2.14 words a blocked module "unsupported GLOBAL posix.system"; it was reported as corrupt."""
    from kt_nnunet.nnunet.model_folder import UnsafeCheckpointError, load_checkpoint_safely

    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "payload": _RunsOsSystem()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"could execute code"):
        load_checkpoint_safely(path)


def test_a_crash_while_saving_leaves_the_previous_checkpoint(budget_trainer, monkeypatch):
    """NnU-Net's torch.save wrote checkpoint_latest.pth in place; a kill mid-write left a torn file."""
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    trainer = budget_trainer()
    trainer.initialize()
    fold = Path(trainer.output_folder)
    fold.mkdir(parents=True, exist_ok=True)
    latest = fold / "checkpoint_latest.pth"
    trainer.current_epoch = 4
    trainer.save_checkpoint(str(latest))
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:  # half written when the process died
            handle.truncate(os.path.getsize(f) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    trainer.current_epoch = 9
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(latest))
    assert load_checkpoint_safely(latest)["current_epoch"] == 5
    assert [p.name for p in fold.iterdir() if p.name.startswith(".")] == []  # no temporary file left

    monkeypatch.setattr(torch, "save", real_save)
    (fold / ".checkpoint_latest.pth.x1y2.tmp").write_bytes(b"torn")  # what a kill -9 mid-save leaves
    trainer.save_checkpoint(str(latest))
    assert load_checkpoint_safely(latest)["current_epoch"] == 10
    assert [p.name for p in fold.iterdir() if p.name.startswith(".")] == []


def test_an_unreadable_checkpoint_latest_falls_back_to_best_or_restarts(budget_trainer, capsys):
    """Resuming from a torn checkpoint_latest.pth crashed; it now uses checkpoint_best.pth or restarts."""
    trainer = budget_trainer()
    trainer.initialize()
    fold = Path(trainer.output_folder)
    fold.mkdir(parents=True, exist_ok=True)
    trainer.current_epoch = 2
    trainer.save_checkpoint(str(fold / "checkpoint_best.pth"))
    (fold / "checkpoint_latest.pth").write_bytes((fold / "checkpoint_best.pth").read_bytes()[:1000])

    resumed = budget_trainer()
    resumed.load_checkpoint(str(fold / "checkpoint_latest.pth"))
    assert resumed.current_epoch == 3
    warning = [line for line in capsys.readouterr().out.splitlines() if "checkpoint_latest.pth" in line]
    assert len(warning) == 1 and "checkpoint_best.pth" in warning[0] and "WARNING" in warning[0]

    (fold / "checkpoint_best.pth").unlink()
    restarted = budget_trainer()
    restarted.load_checkpoint(str(fold / "checkpoint_latest.pth"))
    assert restarted.current_epoch == 0
    warning = [line for line in capsys.readouterr().out.splitlines() if "checkpoint_latest.pth" in line]
    assert len(warning) == 1 and "from scratch" in warning[0]


def test_a_planted_pickle_in_checkpoint_latest_is_refused_not_skipped_by_the_fallback(budget_trainer, tmp_path):
    """The fallback is for torn files only: an unsafe checkpoint_latest.pth stops the run."""
    from kt_nnunet.nnunet.model_folder import ModelFolderError

    trainer = budget_trainer()
    marker = tmp_path / "pwned"
    _plant_pickle(Path(trainer.output_folder) / "checkpoint_latest.pth", marker)
    with pytest.raises(ModelFolderError, match="refused"):
        trainer.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_latest.pth"))
    assert not marker.exists()


def test_budget_trainer_checkpoints_name_nnunet_trainer_and_provenance_the_real_class(budget_trainer):
    """Stock nnUNetv2_predict on nnUNetTrainerKTBudget models needed nnUNet_extTrainer."""
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    trainer = budget_trainer()
    trainer.initialize()
    fold = Path(trainer.output_folder)
    fold.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(fold / "checkpoint_final.pth"))
    checkpoint = load_checkpoint_safely(fold / "checkpoint_final.pth")
    assert checkpoint["trainer_name"] == "nnUNetTrainer"
    assert checkpoint["kt_trainer_name"] == "nnUNetTrainerKTBudget"
    # what kt-nnunet records about the model (labelling provenance, evaluation) still names the real class
    from kt_nnunet.nnunet.model_folder import load_trained_model

    folder = fold.parent
    (folder / "plans.json").write_text(json.dumps(trainer.plans_manager.plans))
    (folder / "dataset.json").write_text(json.dumps(trainer.dataset_json))
    assert load_trained_model(folder, checkpoint_name="checkpoint_final.pth").provenance()["trainer"] == \
        "nnUNetTrainerKTBudget"
