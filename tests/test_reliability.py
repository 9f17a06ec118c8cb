"""Issue 11: untrusted files cannot run code, broken files give one clear error, checkpoints survive crashes.

Each test states its item. None trains: trainers are built on a hand-written plans file and a preprocessed
folder holding one placeholder file (nnU-Net's ``initialize`` only looks at file endings there).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from labelling_teachers import (make_model_folder, nnunet_plans, teachers, transferal,  # noqa: F401  (fixtures)
                                with_architecture)

from kt_nnunet.errors import KtNnunetError

DATASET = "Dataset611_Reliable"
PLANS_NAME = "ktPlans_light_unet"


class _WritesMarker:
    """Unpickling this runs ``open(marker, 'w')``: what a planted checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {}, "payload": _WritesMarker(marker)}, path)


@pytest.fixture
def budget_trainer(nnunet_env):
    """``build_trainer(nnUNetTrainerKTBudget, ...)`` on a tiny light U-Net plan, without preprocessing."""
    from kt_nnunet.nnunet.training_api import build_trainer
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    plans = with_architecture(nnunet_plans(), "light_unet")
    plans["dataset_name"] = DATASET
    plans["configurations"]["2d"]["kt_budget"] = {"num_epochs": 1, "num_iterations_per_epoch": 2,
                                                  "num_val_iterations_per_epoch": 1}
    folder = nnunet_env["nnUNet_preprocessed"] / DATASET
    (folder / plans["configurations"]["2d"]["data_identifier"]).mkdir(parents=True)
    (folder / plans["configurations"]["2d"]["data_identifier"] / "case_000.b2nd").touch()
    (folder / f"{PLANS_NAME}.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "image"}, "numTraining": 1,
                                                     "labels": {"background": 0, "class1": 1, "class2": 2},
                                                     "file_ending": ".nii.gz"}))
    (folder / "splits_final.json").write_text(json.dumps([{"train": ["case_000"], "val": ["case_000"]}] * 5))

    def build():
        return build_trainer(nnUNetTrainerKTBudget, DATASET, "2d", 0, PLANS_NAME, continue_training=True)

    return build


# ------------------------------------------------------------------------------------- code execution
def test_item1_a_planted_pickle_in_checkpoint_latest_is_refused_on_continue(budget_trainer, tmp_path):
    """Item 1: ``--continue`` unpickled a fold's checkpoint_latest.pth with weights_only=False (code execution)."""
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


def test_item3_a_pickle_calling_os_system_is_refused_as_code_not_corrupt(tmp_path):
    """Item 3: torch 2.14 words a blocked module "unsupported GLOBAL posix.system"; it was reported as corrupt."""
    from kt_nnunet.nnunet.model_folder import UnsafeCheckpointError, load_checkpoint_safely

    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "payload": _RunsOsSystem()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"could execute code"):
        load_checkpoint_safely(path)


def _hub_teacher(root: Path, marker: Path) -> Path:
    """A model folder whose plans name ``torch.hub.load`` on a local repo whose hubconf.py writes ``marker``."""
    plans = nnunet_plans()
    folder = make_model_folder(root / "nnUNetTrainer__evil__2d", plans)
    repo = root / "repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef net(**kwargs):\n    raise SystemExit\n")
    plans["configurations"]["2d"]["architecture"] = {
        "network_class_name": "torch.hub.load",
        "arch_kwargs": {"repo_or_dir": str(repo), "model": "net", "source": "local", "trust_repo": True},
        "_kw_requires_import": []}
    (folder / "plans.json").write_text(json.dumps(plans))
    return folder


def test_item2_plans_naming_torch_hub_load_are_refused_by_label(nnunet_env, transferal, tmp_path):  # noqa: F811
    """Item 2: plans.json is code: nnU-Net pydoc.locates and calls whatever network_class_name names."""
    from kt_nnunet.cli import main

    marker = tmp_path / "pwned"
    teacher = _hub_teacher(tmp_path, marker)
    result = CliRunner().invoke(main, ["label", "--teacher", str(teacher), "--images", str(transferal), "--out",
                                       str(tmp_path / "Dataset830_Evil"), "--no-tta", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "network_class_name" in result.output and "torch.hub.load" in result.output
    assert str(teacher / "plans.json") in result.output.replace("\n", "")
    assert not marker.exists()
    assert not (tmp_path / "Dataset830_Evil").exists()


@pytest.mark.parametrize("key,value", [
    ("nonlin", "torch.hub.load"),
    ("nonlin", "torch.nn.modules.module.torch.hub.load"),  # under torch.nn by name, not a torch.nn class
    ("conv_op", "os.system"),
])
def test_item2_kw_requires_import_outside_torch_nn_is_refused(tmp_path, key, value):
    """Item 2: ``_kw_requires_import`` entries are pydoc.located too; only torch.nn classes are accepted."""
    from kt_nnunet.nnunet.model_folder import UnsafePlansError, load_trained_model

    folder = make_model_folder(tmp_path / "teacher", nnunet_plans())
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"][key] = value
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(UnsafePlansError, match=rf"plans\.json.*arch_kwargs\.{key}.*{value.replace('.', '.')}"):
        load_trained_model(folder).build_network()


def test_item2_a_trainer_refuses_plans_naming_other_code(budget_trainer, nnunet_env):
    """Item 2: the trainers build the network from plans on disk too (fine-tuning copies a student's plans)."""
    from kt_nnunet.nnunet.model_folder import UnsafePlansError

    path = nnunet_env["nnUNet_preprocessed"] / DATASET / f"{PLANS_NAME}.json"
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "builtins.exec"
    path.write_text(json.dumps(plans))
    with pytest.raises(UnsafePlansError, match=r"ktPlans_light_unet\.json.*network_class_name 'builtins\.exec'"):
        budget_trainer().initialize()


def test_item2_plans_of_registered_and_nnunet_architectures_still_build(tmp_path):
    """Item 2 (no false alarm): kt-nnunet's own, a plugin's and nnU-Net's PlainConvUNet plans still build."""
    from kt_nnunet.nnunet.model_folder import load_trained_model

    for arch in ("unet", "segresnet"):
        folder = make_model_folder(tmp_path / arch, with_architecture(nnunet_plans(), arch))
        assert isinstance(load_trained_model(folder).build_network(), torch.nn.Module)
    stock = make_model_folder(tmp_path / "stock", nnunet_plans())
    assert type(load_trained_model(stock).build_network()).__name__ == "PlainConvUNet"


# ------------------------------------------------------------------------------------- broken inputs
def test_item4_a_truncated_nii_gz_is_refused_naming_the_file(tmp_path):
    """Item 4: a truncated .nii.gz was read without error (SimpleITK fills the missing voxels)."""
    from kt_nnunet.data import CorruptFileError, tiny_dataset, validate_dataset

    folder = tiny_dataset(612, "Truncated", tmp_path, num_train=2, num_test=0)
    image = folder / "imagesTr" / "case_001_0000.nii.gz"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"case_001_0000\.nii\.gz.*truncated"):
        validate_dataset(folder)
    label = folder / "labelsTr" / "case_000.nii.gz"
    image.write_bytes(data)
    label.write_bytes(label.read_bytes()[:-8])  # only the gzip trailer (CRC and size) is missing
    with pytest.raises(CorruptFileError, match=r"labelsTr/case_000\.nii\.gz.*truncated"):
        validate_dataset(folder)


# ------------------------------------------------------------------------------------- checkpoints
def test_item8_a_crash_while_saving_leaves_the_previous_checkpoint(budget_trainer, monkeypatch):
    """Item 8: nnU-Net's torch.save wrote checkpoint_latest.pth in place; a kill mid-write left a torn file."""
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


def test_item8_an_unreadable_checkpoint_latest_falls_back_to_best_or_restarts(budget_trainer, capsys):
    """Item 8: resuming from a torn checkpoint_latest.pth crashed; it now uses checkpoint_best.pth or restarts."""
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


def test_item8_a_planted_pickle_is_refused_not_skipped(budget_trainer, tmp_path):
    """Item 8 with item 1: the fallback is for torn files only; an unsafe checkpoint stops the run."""
    from kt_nnunet.nnunet.model_folder import ModelFolderError

    trainer = budget_trainer()
    marker = tmp_path / "pwned"
    _plant_pickle(Path(trainer.output_folder) / "checkpoint_latest.pth", marker)
    with pytest.raises(ModelFolderError, match="refused"):
        trainer.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_latest.pth"))
    assert not marker.exists()


# ------------------------------------------------------------------------------------- lower
def test_lower_budget_trainer_checkpoints_name_nnunet_trainer(budget_trainer):
    """Lower: stock nnUNetv2_predict on nnUNetTrainerKTBudget models needed nnUNet_extTrainer."""
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


# ------------------------------------------------------------------------------------- fuzz
def _edit_json(folder: Path, **changes) -> None:
    content = json.loads((folder / "dataset.json").read_text())
    for key, value in changes.items():
        if value is _DELETE:
            del content[key]
        else:
            content[key] = value
    (folder / "dataset.json").write_text(json.dumps(content))


_DELETE = object()


def _write_like(path: Path, like: Path, array=None, spacing=None) -> None:
    """An image file with ``like``'s geometry, optionally other voxels (``array``) or an isotropic ``spacing``."""
    import SimpleITK as sitk

    reference = sitk.ReadImage(str(like))
    voxels = sitk.GetArrayFromImage(reference)
    image = sitk.GetImageFromArray(voxels if array is None else array)
    if array is None or array.shape == voxels.shape:
        image.CopyInformation(reference)
    if spacing is not None:
        image.SetSpacing((spacing,) * image.GetDimension())
    sitk.WriteImage(image, str(path))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


IMAGE = "imagesTr/case_001_0000.nii.gz"
LABEL = "labelsTr/case_001.nii.gz"


def _label_array(folder: Path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / LABEL)))


# name -> (mutation, whether the images themselves are broken, so that `label --images` must refuse it too)
BROKEN_DATASETS = {
    "no_dataset_json": (lambda f: (f / "dataset.json").unlink(), False),
    "dataset_json_not_json": (lambda f: (f / "dataset.json").write_text("{not json"), False),
    "dataset_json_a_list": (lambda f: (f / "dataset.json").write_text("[1, 2]"), False),
    "no_labels_key": (lambda f: _edit_json(f, labels=_DELETE), False),
    "labels_with_a_gap": (lambda f: _edit_json(f, labels={"background": 0, "class1": 1, "class2": 3}), False),
    "labels_not_numbers": (lambda f: _edit_json(f, labels={"background": 0, "class1": "one", "class2": 2}), False),
    "unknown_file_ending": (lambda f: _edit_json(f, file_ending=".jpg"), False),
    "num_training_wrong": (lambda f: _edit_json(f, numTraining=7), False),
    "label_file_missing": (lambda f: (f / LABEL).unlink(), False),
    "label_without_image": (lambda f: shutil.copy(f / LABEL, f / "labelsTr/case_009.nii.gz"), False),
    "channel_file_missing": (lambda f: _edit_json(f, channel_names={"0": "a", "1": "b"}), False),
    "label_value_undeclared": (lambda f: _write_like(f / LABEL, f / LABEL, _label_array(f) * 0 + 5), False),
    "label_shape_differs": (lambda f: _write_like(f / LABEL, f / LABEL, _label_array(f)[..., :32, :32]), False),
    "label_spacing_differs": (lambda f: _write_like(f / LABEL, f / LABEL, spacing=2.0), False),
    "truncated_label": (lambda f: _truncate(f / LABEL), False),
    "truncated_image": (lambda f: _truncate(f / IMAGE), True),
    "gzip_trailer_missing": (lambda f: _truncate(f / IMAGE, keep=(1 - 8 / (f / IMAGE).stat().st_size)), True),
    "empty_image_file": (lambda f: (f / IMAGE).write_bytes(b""), True),
    "text_named_nii_gz": (lambda f: (f / IMAGE).write_text("not an image"), True),
    "image_without_channel_suffix": (lambda f: (f / IMAGE).rename(f / "imagesTr/case_001.nii.gz"), True),
    "no_images": (lambda f: [p.unlink() for p in (f / "imagesTr").iterdir()], True),
}

COMMANDS = {
    "data check": lambda d, teacher: ["data", "check", str(d.folder)],
    "plan": lambda d, teacher: ["plan", str(d.id), "--arch", "light_unet", "--tiny", "-np", "1"],
    "train": lambda d, teacher: ["train", str(d.id), "--arch", "light_unet", "--tiny", "--epochs", "1", "--iterations",
                                 "1", "--val-iterations", "1", "--no-validate", "--device", "cpu", "-np", "1"],
    "label": lambda d, teacher: ["label", "--teacher", str(teacher), "--images", str(d.id), "--out",
                                 "Dataset899_Out", "--no-tta", "--no-progress"],
    "transfer": lambda d, teacher: ["transfer", "--teacher", str(teacher), "--dataset", str(d.id), "--arch",
                                    "light_unet", "--tiny", "--epochs", "1", "--iterations", "1", "--val-iterations",
                                    "1", "--no-validate", "-np", "1"],
    "finetune": lambda d, teacher: ["finetune", "--model", str(teacher), "--dataset", str(d.id), "--epochs", "1",
                                    "--iterations", "1", "--val-iterations", "1", "--no-validate", "-np", "1"],
}


class _Broken:
    def __init__(self, name, dataset_id, folder, images_broken):
        self.name, self.id, self.folder, self.images_broken = name, dataset_id, folder, images_broken


@pytest.fixture(scope="module")
def broken_datasets(tmp_path_factory):
    """The nnU-Net folders with one broken copy of a 2-case tiny dataset per BROKEN_DATASETS entry, and a teacher."""
    from kt_nnunet.data import tiny_dataset

    root = tmp_path_factory.mktemp("fuzz")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / variable).mkdir()
    base = tiny_dataset(900, "Base", root / "base", num_train=2, num_test=0)
    teacher = make_model_folder(root / "models" / "nnUNetTrainer__ktPlans_light_unet__2d",
                                with_architecture(nnunet_plans(), "light_unet"))
    broken = []
    for index, (name, (mutate, images_broken)) in enumerate(BROKEN_DATASETS.items()):
        folder = root / "nnUNet_raw" / f"Dataset{901 + index}_Fuzz"
        shutil.copytree(base, folder)
        mutate(folder)
        broken.append(_Broken(name, 901 + index, folder, images_broken))
    return root, teacher, broken


def _tree(root: Path) -> set:
    return {p for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") for p in (root / variable).rglob("*")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_fuzz_broken_datasets_give_one_error_line_and_leave_nothing(broken_datasets, command, monkeypatch):
    """Fuzz: 21 broken datasets fed to each command's dataset argument: exit 1, one `Error:` line naming the file,
    no traceback, nothing new under nnUNet_raw/preprocessed/results (`label` reads only the images, so it gets
    the sets with broken images)."""
    from kt_nnunet.cli import main

    root, teacher, broken = broken_datasets
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(root / variable))
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    cases = [d for d in broken if d.images_broken or command != "label"]
    assert len(cases) >= (6 if command == "label" else 20)
    failures = []
    for dataset in cases:
        before = _tree(root)
        result = CliRunner().invoke(main, COMMANDS[command](dataset, teacher))
        new = sorted(str(p.relative_to(root)) for p in _tree(root) - before)
        lines = result.output.strip().splitlines()
        if (result.exit_code != 1 or "Traceback" in result.output or new or len(lines) != 1
                or not lines[-1].startswith("Error: ") or str(dataset.folder.name) not in lines[-1]):
            failures.append(f"{dataset.name}: exit {result.exit_code}, new {new[:3]}, "
                            f"{type(result.exception).__name__}: {result.output.strip()[-300:]}")
            for path in new:  # keep one failure from spoiling the next dataset's check
                shutil.rmtree(root / path, ignore_errors=True) if (root / path).is_dir() else (root / path).unlink(
                    missing_ok=True)
    assert not failures, "\n".join(failures)


def _edit_checkpoint(folder: Path, change) -> None:
    path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(path, weights_only=False)  # our own fixture file
    change(checkpoint)
    torch.save(checkpoint, path)


def _edit_plans(folder: Path, change) -> None:
    plans = json.loads((folder / "plans.json").read_text())
    change(plans)
    (folder / "plans.json").write_text(json.dumps(plans))


BROKEN_TEACHERS = {
    "plans_a_list": lambda f: (f / "plans.json").write_text("[]"),
    "plans_without_configurations": lambda f: _edit_plans(f, lambda p: p.pop("configurations")),
    "plans_without_patch_size": lambda f: _edit_plans(f, lambda p: p["configurations"]["2d"].pop("patch_size")),
    "unknown_reader": lambda f: _edit_plans(f, lambda p: p.update(image_reader_writer="NoSuchIO")),
    "unknown_normalization": lambda f: _edit_plans(f, lambda p: p["configurations"]["2d"].update(
        normalization_schemes=["NoSuchNormalization"])),
    "dataset_json_without_labels": lambda f: (f / "dataset.json").write_text('{"channel_names": {"0": "x"}}'),
    "checkpoint_without_init_args": lambda f: _edit_checkpoint(f, lambda c: c.pop("init_args")),
    "weights_of_another_shape": lambda f: _edit_checkpoint(f, lambda c: c.update(
        network_weights={k: v[:1] for k, v in c["network_weights"].items()})),
    "weights_missing_a_tensor": lambda f: _edit_checkpoint(f, lambda c: c["network_weights"].pop(
        next(iter(c["network_weights"])))),
    "checkpoint_truncated": lambda f: (f / "fold_0/checkpoint_final.pth").write_bytes(
        (f / "fold_0/checkpoint_final.pth").read_bytes()[:500]),
}


def test_fuzz_broken_teacher_folders_give_one_error_line(nnunet_env, transferal, tmp_path):  # noqa: F811
    """Fuzz (checkpoints and plans from others): broken teacher folders fed to `kt-nnunet label` give one `Error:`
    line naming the folder's file, not a traceback from inside nnU-Net on the first image."""
    from kt_nnunet.cli import main

    good = make_model_folder(tmp_path / "good", with_architecture(nnunet_plans(), "light_unet"))
    failures = []
    for index, (name, mutate) in enumerate(BROKEN_TEACHERS.items()):
        teacher = tmp_path / name
        shutil.copytree(good, teacher)
        mutate(teacher)
        result = CliRunner().invoke(main, ["label", "--teacher", str(teacher), "--images", str(transferal), "--out",
                                           f"Dataset{840 + index}_Out", "--no-tta", "--no-progress"])
        lines = result.output.strip().splitlines()
        if (result.exit_code != 1 or "Traceback" in result.output or len(lines) != 1
                or not lines[0].startswith("Error: ") or str(teacher) not in lines[0]):
            failures.append(f"{name}: exit {result.exit_code}, {type(result.exception).__name__}: "
                            f"{result.output.strip()[-300:]}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in nnunet_env["nnUNet_raw"].iterdir()) == []


# ------------------------------------------------------------------------------- options and budgets
def _one_error_line(args, *expected):
    from kt_nnunet.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for text in expected:
        assert text in lines[0], result.output
    return lines[0]


@pytest.mark.parametrize("kwargs,expected", [
    ('{"base_feature": 4}', ["no option 'base_feature'", "did you mean 'base_features'"]),
    ('{"base_features": "x"}', ["'base_features' must be a whole number of at least 1", "'x'"]),
    ('{"base_features": -4}', ["'base_features' must be a whole number of at least 1", "-4"]),
    ('{"downsample": 2}', ["'downsample' must be a string"]),
])
@pytest.mark.parametrize("command", ["plan", "transfer"])
def test_item7_arch_kwargs_are_checked_against_the_architecture(nnunet_env, kwargs, expected, command):
    """Item 7: a misspelt --arch-kwargs name trained the default network; wrong values crashed after planning."""
    args = (["plan", "Dataset612_Options", "--arch", "unet"] if command == "plan"
            else ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"])
    _one_error_line(args + ["--arch-kwargs", kwargs], "--arch-kwargs", *expected)
    assert not any(nnunet_env["nnUNet_preprocessed"].iterdir())


def test_item7_spec_options_of_every_architecture_accept_their_own_defaults():
    """Item 7: the check must not refuse what the architectures declare (or nnU-Net's constructor names)."""
    from kt_nnunet.registry import get_architecture, list_architectures

    for name in list_architectures():
        spec = get_architecture(name) if isinstance(name, str) else name
        spec.check_options({**spec.default_kwargs, **spec.tiny_kwargs})
    get_architecture("nnunet_plain").check_options({"n_conv_per_stage": [1, 1]})


@pytest.mark.parametrize("option", ["--epochs", "--iterations", "--val-iterations"])
@pytest.mark.parametrize("command", ["plan", "transfer", "finetune"])
def test_item7_budgets_below_one_are_refused(nnunet_env, tmp_path, command, option):
    """Item 7: --epochs 0 was written into the plans; transfer --epochs 0 raised ZeroDivisionError."""
    args = {"plan": ["plan", "Dataset612_Options", "--arch", "unet"],
            "transfer": ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"],
            "finetune": ["finetune", "--model", str(tmp_path), "--dataset", "Dataset612_Options"]}[command]
    _one_error_line(args + [option, "0"], f"{option} must be a whole number of at least 1, got 0")
    assert not any(nnunet_env["nnUNet_preprocessed"].iterdir())


def test_item7_the_api_refuses_budgets_below_one_too(nnunet_env):
    """Item 7: the Python API is checked as well, not only the CLI."""
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.training.transferring import prepare_transfer

    with pytest.raises(KtNnunetError, match="--epochs must be a whole number of at least 1"):
        write_architecture_plans("Dataset612_Options", "unet", budget=Budget(epochs=0))
    with pytest.raises(KtNnunetError, match="--iterations must be a whole number of at least 1"):
        prepare_transfer([], "Dataset612_Options", "unet", budget=Budget(iterations_per_epoch=-1))


# ----------------------------------------------------------------------------- one line, not a traceback
def _experiment_config(tmp_path, output, name, **changes) -> Path:
    import yaml

    config = {"name": "tiny", "output": str(output), "source": 501, "transferal": 502,
              "test": {"dataset": 503, "split": "test"},
              "budget": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
              "teachers": [{"architecture": "unet", "tiny": True}], "students": ["light_unet"],
              "modes": ["single_teacher"], **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("case", ["label --device tpu", "label --device cuda", "transfer --device cuda",
                                  "finetune --device cuda", "transfer --device tpu", "label --step-size 0",
                                  "synth --classes 300", "synth --channels 0", "synth --spacing -1,1",
                                  "experiment output is a file", "experiment output under a file"])
def test_item10_bad_options_give_one_error_line(nnunet_env, teachers, transferal, tmp_path, monkeypatch,  # noqa: F811
                                                case):
    """Item 10: these gave a traceback (torch, nnU-Net's assert, numpy, SimpleITK, mkdir) instead of one line."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    label = ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out",
             str(tmp_path / "Dataset831_Options"), "--no-tta", "--no-progress"]
    synth = ["data", "synth", "--id", "832", "--name", "Options", "--out", str(tmp_path), "--shape", "16,16",
             "--train", "1", "--test", "0"]
    output_file = tmp_path / "afile"
    output_file.write_text("")
    args, expected = {
        "label --device tpu": (label + ["--device", "tpu"], "--device 'tpu'"),
        "label --device cuda": (label + ["--device", "cuda"], "no CUDA GPU"),
        "transfer --device cuda": (["transfer", "--dataset", "Dataset612_Options", "--arch", "unet", "--device",
                                    "cuda"], "no CUDA GPU"),
        "finetune --device cuda": (["finetune", "--model", str(teachers["unet"]), "--dataset", "Dataset612_Options",
                                    "--device", "cuda"], "no CUDA GPU"),
        "transfer --device tpu": (["transfer", "--dataset", "Dataset612_Options", "--arch", "unet", "--device",
                                   "tpu"], "--device 'tpu'"),
        "label --step-size 0": (label + ["--step-size", "0"], "--step-size 0.0 must be in (0, 1]"),
        "synth --classes 300": (synth + ["--classes", "300"], "at most 256 classes"),
        "synth --channels 0": (synth + ["--channels", "0"], "at least one image channel"),
        "synth --spacing -1,1": (synth + ["--spacing", "-1,1"], "positive number of mm"),
        "experiment output is a file": (
            ["experiment", str(_experiment_config(tmp_path, output_file, "a.yaml")), "--dry-run"],
                                        "output: " + str(output_file) + " is a file"),
        "experiment output under a file": (
            ["experiment", str(_experiment_config(tmp_path, output_file / "run", "b.yaml")),
             "--dry-run"], "cannot write to"),
    }[case]
    _one_error_line(args, expected)
    assert not (tmp_path / "Dataset831_Options").exists() and not (tmp_path / "Dataset832_Options").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no hidden work folder left


def test_item5_a_finetune_folder_that_is_the_test_dataset_is_refused(nnunet_env, tmp_path):
    """Item 5: the fine-tune/test leak check compared ids or paths only, so a folder path and an id passed."""
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.schema import ExperimentConfigError

    from kt_nnunet.data import tiny_dataset

    raw = nnunet_env["nnUNet_raw"]
    for folder in ("Dataset501_Src", "Dataset502_Trans"):
        (raw / folder).mkdir()
    tiny_dataset(503, "Test", raw, num_train=2, num_test=0)  # the fine-tune set needs its 2 cases
    (tmp_path / "alias").symlink_to(raw / "Dataset503_Test")
    data = {"name": "tiny", "output": "runs/tiny", "source": 501, "transferal": 502,
            "test": {"dataset": 503, "split": "train"},
            "budget": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
            "teachers": [{"architecture": "unet"}], "students": ["light_unet"],
            "modes": ["single_teacher", "kt_finetune"],
            "finetune": {"dataset": str(tmp_path / "alias"), "split": "train", "cases": 2}}
    config = parse_config(data, source="exp.yaml", base_dir=tmp_path)
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: finetune\.dataset: is the test set"):
        config.check_inputs()
    data["test"]["split"] = "test"  # other split of the same dataset: no leak
    parse_config(data, source="exp.yaml", base_dir=tmp_path).check_inputs()


def test_item9_an_unfinished_run_without_a_finished_case_is_replaced_without_asking(tmp_path):
    """Item 9: a refused label command left a work folder; the corrected command was refused as 'other settings'."""
    from kt_nnunet.labelling import OutputStateError
    from kt_nnunet.labelling.output import LabelledDatasetWriter

    target = tmp_path / "Dataset833_Retry"
    assert LabelledDatasetWriter(target, {"tile_step_size": 0.0}, ".nii.gz").prepare(force=False)
    corrected = LabelledDatasetWriter(target, {"tile_step_size": 0.5}, ".nii.gz")
    assert corrected.prepare(force=False)
    assert json.loads((corrected.state / "settings.json").read_text()) == {"tile_step_size": 0.5}
    (corrected.state / "cases" / "case_000.json").write_text("{}")  # now it has work to lose: ask first
    with pytest.raises(OutputStateError, match="unfinished labelling run with other settings.*--force"):
        LabelledDatasetWriter(target, {"tile_step_size": 0.25}, ".nii.gz").prepare(force=False)


def test_item9_label_checks_its_options_before_creating_the_work_folder(nnunet_env, teachers, transferal,  # noqa: F811
                                                                        tmp_path):
    """Item 9: --step-size, --device and the images are checked before the hidden work folder exists."""
    base = ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out",
            str(tmp_path / "out" / "Dataset834_Order"), "--no-tta", "--no-progress"]
    for bad in (["--step-size", "2"], ["--device", "tpu"], ["--num-parts", "2", "--part-id", "5"]):
        _one_error_line(base + bad)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), bad


# ------------------------------------------------------------------------------------ lower items
@pytest.mark.parametrize("case", ["transfer --force --continue", "finetune --force --continue",
                                  "label --num-parts 0", "label --teacher FILE", "transfer --teacher FILE",
                                  "transfer without checkpoints"])
def test_lower_option_messages(nnunet_env, teachers, transferal, tmp_path, case):  # noqa: F811
    """Lower items: --force --continue ran; --num-parts 0 said 'must be in 0..-1'; a --teacher file was reported
    as missing; transfer suggested a --checkpoint option it does not have."""
    a_file = tmp_path / "plans.json"
    a_file.write_text("{}")
    empty_model = make_model_folder(tmp_path / "nnUNetTrainer__untrained__2d", nnunet_plans())
    for checkpoint in empty_model.glob("fold_*/*.pth"):
        checkpoint.unlink()
    (nnunet_env["nnUNet_raw"] / transferal.name).symlink_to(transferal)  # labelled: transfer loads the teachers
    label = ["label", "--images", str(transferal), "--out", str(tmp_path / "out" / "Dataset835_Lower"),
             "--no-tta", "--no-progress"]
    transfer = ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"]
    args, expected = {
        "transfer --force --continue": (transfer + ["--force", "--continue"], "--force and --continue contradict"),
        "finetune --force --continue": (["finetune", "--model", str(teachers["unet"]), "--dataset",
                                         "Dataset612_Options", "--force", "--continue"],
                                        "--force and --continue contradict"),
        "label --num-parts 0": (label + ["--teacher", str(teachers["unet"]), "--num-parts", "0"],
                                "--num-parts 0 must be at least 1"),
        "label --teacher FILE": (label + ["--teacher", str(a_file)], "is a file, not a model folder"),
        "transfer --teacher FILE": (transfer + ["--teacher", str(a_file)], "is a file, not a model folder"),
        "transfer without checkpoints": (["transfer", "--dataset", transferal.name, "--arch", "unet", "--teacher",
                                          str(empty_model)], "label/finetune --checkpoint"),
    }[case]
    line = _one_error_line(args, expected)
    assert "0..-1" not in line
    assert not (tmp_path / "out").exists()


def test_item7_experiment_arch_kwargs_are_checked_when_the_config_is_read(tmp_path):
    """Item 7: an experiment's arch_kwargs typo would only fail (or silently train the default) steps later."""
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.schema import ExperimentConfigError

    data = {"name": "tiny", "output": "runs/tiny", "source": 501, "transferal": 502,
            "test": {"dataset": 503, "split": "test"}, "teachers": [{"architecture": "unet"}],
            "students": [{"architecture": "light_unet", "arch_kwargs": {"base_feature": 8}}],
            "modes": ["single_teacher"]}
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: students\[0\]\.arch_kwargs: .*'base_feature'; "
                                                    r"did you mean 'base_features'"):
        parse_config(data, source="exp.yaml", base_dir=tmp_path)


def test_item11_a_part_never_removes_the_work_folder_another_part_is_creating(tmp_path, monkeypatch):
    """Item 11: two `--num-parts` processes started in the same instant: one deleted the other's half-created
    work folder, which then died with FileNotFoundError (5 of 300 trials). Here part 1 runs its whole
    ``prepare()`` while part 0 is paused right after its first mkdir."""
    import threading

    from kt_nnunet.labelling.output import LabelledDatasetWriter

    target = tmp_path / "Dataset836_Race"
    settings = {"tile_step_size": 0.5}
    paused, second_done = threading.Event(), threading.Event()
    real_mkdir, real_rmtree = os.mkdir, shutil.rmtree
    removed, failures, results = [], [], {}

    def mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if threading.current_thread().name == "part0" and not paused.is_set():
            paused.set()
            second_done.wait(timeout=1)  # part 1 prepares now, unless it has to wait for part 0

    def rmtree(path, *args, **kwargs):
        removed.append(Path(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(shutil, "rmtree", rmtree)

    def part(index):
        try:
            results[index] = LabelledDatasetWriter(target, settings, ".nii.gz").prepare(force=False)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            failures.append(f"part {index}: {type(exc).__name__}: {exc}")
        finally:
            if index == 1:
                second_done.set()

    first = threading.Thread(target=part, args=(0,), name="part0")
    first.start()
    assert paused.wait(timeout=10)
    second = threading.Thread(target=part, args=(1,), name="part1")
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    work = LabelledDatasetWriter(target, settings, ".nii.gz").work
    assert not failures, failures
    assert results == {0: True, 1: True}
    assert [p for p in removed if p == work or work in p.parents] == []
    assert json.loads((work / ".kt-state" / "settings.json").read_text()) == settings
    assert (work / "imagesTr").is_dir() and (work / "labelsTr").is_dir() and (work / ".kt-state/cases").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [work.name]  # no staging folder or lock file left


def test_lower_a_killed_finalisation_leaves_no_temporary_file_in_the_published_dataset(tmp_path):
    """Lower: a kill during finalisation left `.provenance.json.*.tmp` in the work folder, and the resumed run
    moved it into the final dataset."""
    from kt_nnunet.labelling.output import LabelledDatasetWriter

    writer = LabelledDatasetWriter(tmp_path / "Dataset837_Final", {"tile_step_size": 0.5}, ".nii.gz")
    assert writer.prepare(force=False)
    writer.write_label("case_000", lambda path: Path(path).write_bytes(b"label"))
    writer.finish_case("case_000", {})
    (writer.work / ".provenance.json.k1ll3d0k.tmp").write_text('{"half": ')  # what the killed run left
    (writer.work / "labelsTr" / ".case_000.nii.gz.a1b2c3d4.tmp").write_bytes(b"torn")

    def metadata(folder, records):
        (folder / "dataset.json").write_text("{}")
        (folder / "provenance.json").write_text(json.dumps({"settings_fingerprint": writer.fingerprint}))

    assert writer.finalize(["case_000"], metadata)
    published = sorted(str(p.relative_to(writer.target)) for p in writer.target.rglob("*"))
    assert published == ["dataset.json", "imagesTr", "labelsTr", "labelsTr/case_000.nii.gz", "provenance.json"]


def test_lower_staged_datasets_publish_no_temporary_file(tmp_path):
    """Lower: the same for every dataset built in a staging folder (`staged_directory`)."""
    from kt_nnunet.data.atomic import staged_directory

    with staged_directory(tmp_path / "Dataset838_Staged") as staging:
        (staging / "dataset.json").write_text("{}")
        (staging / ".dataset.json.abcdefgh.tmp").write_text("{")  # a killed atomic write's leftover
    assert sorted(p.name for p in (tmp_path / "Dataset838_Staged").iterdir()) == ["dataset.json"]


def _hand_labelled(folder: Path) -> Path:
    """A dataset kt-nnunet never wrote: nnU-Net's own dataset.json keys, no kt-nnunet record or provenance."""
    (folder / "labelsTr").mkdir(parents=True)
    (folder / "labelsTr" / "case_000.nii.gz").write_bytes(b"drawn by hand for a week")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0},
                                                     "numTraining": 1, "file_ending": ".nii.gz"}))
    return folder


@pytest.mark.parametrize("command", ["label", "data synth"])
def test_lower_force_never_replaces_a_dataset_kt_nnunet_did_not_write(nnunet_env, teachers, transferal,  # noqa: F811
                                                                      tmp_path, command):
    """Lower: `label --out X --force` replaced a hand-labelled dataset kt-nnunet never wrote; the data writers'
    `--force` did the same. Only folders with a kt-nnunet provenance.json / dataset.json record are replaced."""
    target = _hand_labelled(tmp_path / "out" / "Dataset839_Hand")
    args = {"label": ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out", str(target),
                      "--no-tta", "--no-progress", "--force"],
            "data synth": ["data", "synth", "--id", "839", "--name", "Hand", "--out", str(target.parent), "--shape",
                           "16,16", "--train", "1", "--test", "0", "--force"]}[command]
    line = _one_error_line(args, str(target), "not written by kt-nnunet", "would delete its 2 file(s)",
                           "move it elsewhere", "--out")
    assert "--force" not in line
    assert (target / "labelsTr" / "case_000.nii.gz").read_bytes() == b"drawn by hand for a week"
    assert sorted(p.name for p in target.parent.iterdir()) == ["Dataset839_Hand"]  # no work or staging folder


def test_lower_force_still_replaces_what_kt_nnunet_wrote(tmp_path):
    """Lower (no false alarm): kt-nnunet's own datasets, labelled ones and empty folders are still replaced."""
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.data.atomic import check_replaceable

    check_replaceable(tiny_dataset(840, "Ours", tmp_path, num_train=1, num_test=0))
    labelled = tmp_path / "Dataset841_Labelled"
    labelled.mkdir()
    (labelled / "provenance.json").write_text(json.dumps({"settings_fingerprint": "0123"}))
    check_replaceable(labelled)
    (tmp_path / "Dataset842_Empty" / "imagesTr").mkdir(parents=True)
    check_replaceable(tmp_path / "Dataset842_Empty")
    tiny_dataset(840, "Ours", tmp_path, num_train=2, num_test=0, force=True)


def _experiment_inputs(raw: Path) -> None:
    from kt_nnunet.data import tiny_dataset

    for dataset_id, name in ((501, "Src"), (502, "Trans"), (503, "Test")):
        tiny_dataset(dataset_id, name, raw, num_train=2, num_test=1)


@pytest.fixture
def no_step_runs(monkeypatch):
    """These configs must be refused before the first step; a step that starts fails the test at once."""
    from kt_nnunet.experiment.runner import ExperimentRunner

    def execute(self, step):
        raise AssertionError(f"step {step.name} ran before the config was refused")

    monkeypatch.setattr(ExperimentRunner, "execute", execute)


def test_lower_finetune_cases_beyond_the_dataset_are_refused_before_any_step(nnunet_env, tmp_path, no_step_runs):
    """Lower: `finetune.cases` larger than the fine-tune dataset was refused only after every model was trained,
    when the fine-tune subset was made."""
    _experiment_inputs(nnunet_env["nnUNet_raw"])
    config = _experiment_config(tmp_path, tmp_path / "run", "ft.yaml", modes=["single_teacher", "kt_finetune"],
                                finetune={"dataset": 503, "split": "train", "cases": 5})
    _one_error_line(["experiment", str(config)], "ft.yaml: finetune.cases: 5 cases asked for",
                    "Dataset503_Test has only 2 labelled case(s) in its train split", "choose at most 2")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["another name has the id", "an input has the id", "a hand-made folder"])
def test_lower_a_derived_dataset_id_clash_is_refused_before_any_step(nnunet_env, tmp_path, no_step_runs, case):
    """Lower: a `derived_dataset_ids` clash was found only at the first label step, after the teachers trained."""
    raw = nnunet_env["nnUNet_raw"]
    _experiment_inputs(raw)
    changes, expected = {
        "another name has the id": ({}, [str(nnunet_env["nnUNet_preprocessed"] / "Dataset800_Other"),
                                         "already has id 800"]),
        "an input has the id": ({"derived_dataset_ids": 502}, ["derived_dataset_ids: 502 gives", "which transferal"]),
        "a hand-made folder": ({}, [str(raw / "Dataset800_tiny_labels_teacher_unet"), "kt-nnunet did not write it"]),
    }[case]
    if case == "another name has the id":  # planned by someone else: nnU-Net would mix the two up
        (nnunet_env["nnUNet_preprocessed"] / "Dataset800_Other").mkdir()
    if case == "a hand-made folder":
        _hand_labelled(raw / "Dataset800_tiny_labels_teacher_unet")
    config = _experiment_config(tmp_path, tmp_path / "run", "ids.yaml", **changes)
    _one_error_line(["experiment", str(config)], "ids.yaml: derived_dataset_ids: ", *expected,
                    "choose derived_dataset_ids so that ids")
    assert not (tmp_path / "run").exists()


def test_lower_a_refused_config_leaves_no_output_folder(nnunet_env, tmp_path, monkeypatch, no_step_runs):
    """Lower: refused configs left an empty output folder (and, with nnU-Net's variables unset, its empty
    nnUNet_raw/preprocessed/results)."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(variable)  # the experiment's own nnU-Net folders: none holds the inputs yet
    config = _experiment_config(tmp_path, tmp_path / "runs" / "tiny", "missing.yaml")
    _one_error_line(["experiment", str(config)], "missing.yaml: source: dataset 501 is not in nnUNet_raw")
    assert not (tmp_path / "runs").exists()


def test_lower_step_seconds_add_up_over_resumed_runs(nnunet_env, tmp_path, monkeypatch):
    """Lower: after a resume, results.json timings kept only the last run's seconds. Now a step finished earlier
    keeps its seconds, and a step resumed from unfinished work adds those of every run (a kill -9 included)."""
    from kt_nnunet import progress
    from kt_nnunet.experiment import runner as runner_module
    from kt_nnunet.experiment.config import load_config
    from kt_nnunet.experiment.runner import ExperimentRunner, experiment_runner

    clock = [0.0]
    monkeypatch.setattr(runner_module.time, "perf_counter", lambda: clock[0])  # the console reads the same clock
    monkeypatch.setattr(runner_module, "UNFINISHED_SAVE_INTERVAL_S", 0.0, raising=False)
    monkeypatch.setattr(ExperimentRunner, "check", lambda self: None)
    config = load_config(_experiment_config(tmp_path, tmp_path / "run", "timing.yaml"))
    teacher, label = "train_teacher:teacher_unet", "label:teacher_unet"
    state_path = tmp_path / "run" / "state.json"

    class Killed(BaseException):
        """kill -9: the process ends where it is; only what is on disk survives."""

    killed_with = []

    def run(plan):
        def execute(self, step):
            seconds, outcome = plan.get(step.name, (0.0, False))
            for done in (1, 2):  # two cases (or epochs): each lets the runner save the seconds so far
                clock[0] += seconds / 2
                progress.announce(progress.CASE, done=done, total=2)
            if outcome == "killed":
                killed_with.append(state_path.read_text())
                raise Killed
            return outcome

        monkeypatch.setattr(ExperimentRunner, "execute", execute)
        try:
            experiment_runner(config, progress=lambda line: None).run()
        except Killed:
            state_path.write_text(killed_with[-1])  # nothing the runner does after the kill reaches the disk
            assert json.loads(killed_with[-1])["steps"][label]["unfinished_seconds"] == 40.0
        return json.loads(state_path.read_text())["steps"]

    run({teacher: (100.0, False), label: (40.0, "killed")})
    steps = run({teacher: (1.0, True), label: (30.0, False)})  # the teacher is reused; labelling resumes
    assert steps[teacher]["seconds"] == 100.0
    assert steps[label]["seconds"] == 70.0 and "unfinished_seconds" not in steps[label]
    steps = run({teacher: (1.0, True), label: (2.0, True)})  # both finished earlier: nothing changes
    assert steps[teacher]["seconds"] == 100.0 and steps[label]["seconds"] == 70.0


def test_an_experiment_sets_nnunet_folder_variables_only_while_it_runs(nnunet_env, tmp_path, monkeypatch):
    """Restructuring (one boundary): the runner pointed nnU-Net's folder variables into the experiment for the
    whole process and never restored them, so later work in the same process used the experiment's folders."""
    from kt_nnunet.experiment.runner import ExperimentRunner, experiment_runner

    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    before = {name: os.environ[name] for name in names}
    seen = {}

    class Stop(Exception):
        pass

    def check(self):
        seen.update({name: os.environ[name] for name in names})
        raise Stop

    monkeypatch.setattr(ExperimentRunner, "check", check)
    output = tmp_path / "own"
    runner = experiment_runner(_experiment_config(tmp_path, output, "own.yaml"), own_nnunet_folders=True)
    assert {name: os.environ[name] for name in names} == before  # building the runner changes nothing
    with pytest.raises(Stop):
        runner.run()
    assert seen == {name: str((output / name).absolute()) for name in names}
    assert {name: os.environ[name] for name in names} == before
