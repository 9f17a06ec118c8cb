"""Transfer trainers and fine-tuning on a tiny 64x64 dataset: a U-Net teacher, light-U-Net students.

One module-scoped world (planned once, teacher trained once) keeps the module near two and a half minutes on
2 cores. Its labelled dataset has an ``ignore`` label on some voxels, as ``kt-nnunet label --min-confidence``
writes; the offline student goes the paper's way: unlabelled transferal set -> teacher labels -> student.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from kt_nnunet.nnunet.ext_trainers import EXT_TRAINER_FOLDER
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.settings import Budget, TransferSettings

pytestmark = pytest.mark.slow

DATASET = 950
# Identical budget and online settings in every test: they live in the shared ktOnline plans file.
BUDGET = dict(tiny=True, budget=Budget(epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1), num_processes=1)
ONLINE, ONLINE_SOFT = TransferSettings("online"), TransferSettings("online", soft=True)
FINETUNE_BUDGET = Budget(epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1, initial_lr=1e-3)


@dataclass
class World:
    root: Path
    raw: Path
    teacher: Path


def _add_ignored_voxels(raw: Path) -> None:
    """What `kt-nnunet label --min-confidence` leaves: an ignore label (max + 1) on uncertain voxels."""
    dataset_json = json.loads((raw / "dataset.json").read_text())
    ignore = max(dataset_json["labels"].values()) + 1
    dataset_json["labels"]["ignore"] = ignore
    (raw / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    for path in sorted((raw / "labelsTr").iterdir()):
        image = nib.load(path)
        labels = np.asarray(image.dataobj).copy()
        labels[:3] = ignore
        nib.save(nib.Nifti1Image(labels, image.affine, image.header), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.nnunet.training_api import train_fold
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    root = tmp_path_factory.mktemp("kt")
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / variable).mkdir()
            patch.setenv(variable, str(root / variable))
        patch.setenv("nnUNet_def_n_proc", "1")
        patch.delenv("nnUNet_n_proc_DA", raising=False)
        raw = tiny_dataset(DATASET, "KTTransfer", num_train=6, num_test=2)
        _add_ignored_voxels(raw)
        # seeded: an unseeded 6-iteration teacher sometimes labelled everything background, and nnU-Net's
        # fingerprint of such a labelled set fails (no foreground intensities)
        planned = write_architecture_plans(DATASET, "unet", tiny=True, num_processes=1,
                                           budget=Budget(2, 3, 1), seed=0)
        teacher = train_fold(nnUNetTrainerKTBudget, DATASET, "2d", 0, planned.plans_name, validate=False)
        torch.set_num_threads(2)
        yield World(root, raw, teacher)


TRANSFERAL, LABELLED = 951, "Dataset952_KTLabelled"


@pytest.fixture(scope="module")
def offline_student(world):
    """The paper's path: an unlabelled transferal set, labelled by the teacher (`kt-nnunet label`), a student."""
    from kt_nnunet.data import register_folder
    from kt_nnunet.training import transfer

    register_folder(world.raw / "imagesTr", TRANSFERAL, "KTUnlabelled", like=DATASET)
    raw = world.raw
    return transfer([f"{world.teacher}:0"], TRANSFERAL, "light_unet", labelled_out=LABELLED,
                    reference_labels=str(raw / "labelsTs"), reference_images=str(raw / "imagesTs"), validate=True,
                    **BUDGET)


def _checkpoint(folder: Path, fold: int = 0) -> dict:
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    return load_checkpoint_safely(folder / f"fold_{fold}" / "checkpoint_final.pth")


def test_offline_student_of_another_architecture_records_provenance_and_teacher_agreement(world, offline_student):
    assert offline_student.parent.name == LABELLED
    plans = json.loads((offline_student / "plans.json").read_text())
    teacher_plans = json.loads((world.teacher / "plans.json").read_text())
    student_class = plans["configurations"]["2d"]["architecture"]["network_class_name"]
    assert student_class.endswith("LightUNet")
    assert student_class != teacher_plans["configurations"]["2d"]["architecture"]["network_class_name"]
    checkpoint = _checkpoint(offline_student)
    assert (checkpoint["trainer_name"], checkpoint["kt_trainer_name"]) == ("nnUNetTrainer", "nnUNetTrainerKTOffline")

    provenance = json.loads((offline_student / "kt_provenance.json").read_text())
    assert provenance["mode"] == "offline" and provenance["labels_source"] == "teacher labels (kt-nnunet label)"
    assert provenance["labelling"]["teachers"][0]["model_folder"] == str(world.teacher)
    assert provenance["labelling"]["fusion"]["method"] == "mean"
    assert (offline_student / "kt_labelling_provenance.json").is_file()

    report = json.loads((offline_student / "fold_0" / "kt_validation.json").read_text())
    summary = json.loads((offline_student / "fold_0" / "validation" / "summary.json").read_text())
    # NaN when neither the (briefly trained) teacher nor the student marks foreground in a validation case
    np.testing.assert_equal(report["teacher_agreement"]["foreground_dice"], summary["foreground_mean"]["Dice"])
    assert report["reference"]["num_cases"] == 2 and set(report["reference"]["dice_per_label"]) == {"1", "2"}
    assert sorted(p.name for p in (offline_student / "fold_0" / "reference").glob("*.nii.gz")) == \
        sorted(p.name for p in (world.raw / "labelsTs").iterdir())


def test_an_existing_fold_is_not_overwritten_without_force(world, offline_student):
    from kt_nnunet.nnunet.training_api import TrainingError
    from kt_nnunet.training import transfer

    before = (offline_student / "fold_0" / "checkpoint_final.pth").stat().st_mtime_ns
    with pytest.raises(TrainingError, match="already holds a finished training; pass --force .* or --continue"):
        transfer([f"{world.teacher}:0"], LABELLED, "light_unet", reference_labels=str(world.raw / "labelsTs"),
                 reference_images=str(world.raw / "imagesTs"), **BUDGET)
    assert (offline_student / "fold_0" / "checkpoint_final.pth").stat().st_mtime_ns == before


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_online_train_step_uses_teacher_targets_at_every_scale(world, soft):
    from kt_nnunet.nnunet.model_folder import load_trained_model
    from kt_nnunet.nnunet.training_api import augmentation_workers, build_trainer
    from kt_nnunet.training.targets import downsample_labels
    from kt_nnunet.training.transferring import prepare_transfer, transfer_trainer

    plan = prepare_transfer([str(world.teacher)], DATASET, "light_unet", transfer=ONLINE, **BUDGET)
    trainer = build_trainer(transfer_trainer(True, soft), plan.dataset_name, "2d", 3, plan.plans_name)
    with augmentation_workers(0):
        trainer.on_train_start()
    batch = next(trainer.dataloader_train)
    captured, loss = [], trainer.loss
    trainer.loss = lambda output, target: captured.append(target) or loss(output, target)
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(batch)["loss"])

    teacher = load_trained_model(world.teacher).load_fold_networks()[0]
    with torch.no_grad():
        logits = teacher(batch["data"])
    shapes = [t.shape for t in batch["target"]]
    assert len(shapes) > 1 and [t.shape[2:] for t in captured[0]] == [s[2:] for s in shapes]
    expected = downsample_labels(logits.argmax(1, keepdim=True), [s[2:] for s in shapes], torch.int16)
    for target, labels in zip(captured[0], expected):
        assert target.shape[1] == (1 + 3 if soft else 1)
        assert torch.equal(target[:, :1].to(torch.int16), labels)
    if soft:
        torch.testing.assert_close(captured[0][0][:, 1:], torch.softmax(logits / 2.0, 1))
        for target in captured[0]:
            torch.testing.assert_close(target[:, 1:].sum(1), torch.ones_like(target[:, 0]))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))
    assert all(not p.requires_grad for net in trainer.teachers.networks for n in net for p in n.parameters())
    assert all(not n.training for net in trainer.teachers.networks for n in net)


def test_two_teachers_are_fused_with_weights_online(world, tmp_path):
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely, load_trained_model
    from kt_nnunet.nnunet.training_api import augmentation_workers, build_trainer
    from kt_nnunet.training.online import nnUNetTrainerKTOnline
    from kt_nnunet.training.transferring import prepare_transfer

    second = tmp_path / "second_teacher"  # the teacher with perturbed weights: a different second opinion
    shutil.copytree(world.teacher, second)
    checkpoint = load_checkpoint_safely(second / "fold_0" / "checkpoint_final.pth")
    generator = torch.Generator().manual_seed(0)
    for value in checkpoint["network_weights"].values():
        if value.is_floating_point():
            value.add_(torch.randn(value.shape, generator=generator) * value.std().nan_to_num() * 0.5)
    torch.save(checkpoint, second / "fold_0" / "checkpoint_final.pth")

    teachers = [str(world.teacher), f"{second}:0"]
    plan = prepare_transfer(teachers, DATASET, "unet", transfer=ONLINE, fusion=FusionSettings("weighted", (1.0, 3.0)),
                            **BUDGET)
    trainer = build_trainer(nnUNetTrainerKTOnline, plan.dataset_name, "2d", 0, plan.plans_name)
    with augmentation_workers(0):
        trainer.initialize()
        trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    batch = next(trainer.dataloader_train)
    targets = trainer.teacher_targets(batch["data"], batch["target"], soft=False)
    with torch.no_grad():
        probabilities = [torch.softmax(load_trained_model(t).load_fold_networks()[0](batch["data"]), 1)
                         for t in (world.teacher, second)]
    expected = (0.25 * probabilities[0] + 0.75 * probabilities[1]).argmax(1, keepdim=True)
    assert torch.equal(targets[0].long(), expected)
    assert not torch.equal(probabilities[0].argmax(1), probabilities[1].argmax(1))  # the teachers disagree


def test_online_trainer_refuses_a_teacher_with_other_preprocessing(world):
    from kt_nnunet.nnunet.paths import preprocessed_folder
    from kt_nnunet.nnunet.training_api import build_trainer
    from kt_nnunet.training.online import nnUNetTrainerKTOnline
    from kt_nnunet.teachers.errors import TeacherMismatchError
    from kt_nnunet.training.transferring import prepare_transfer

    plan = prepare_transfer([str(world.teacher)], DATASET, "light_unet", transfer=ONLINE, **BUDGET)
    folder = preprocessed_folder() / plan.dataset_name
    plans = json.loads((folder / f"{plan.plans_name}.json").read_text())
    plans["plans_name"] = "ktOnlineCT_light_unet"
    plans["configurations"]["2d"]["normalization_schemes"] = ["CTNormalization"]
    (folder / "ktOnlineCT_light_unet.json").write_text(json.dumps(plans))
    trainer = build_trainer(nnUNetTrainerKTOnline, plan.dataset_name, "2d", 0, "ktOnlineCT_light_unet")
    with pytest.raises(TeacherMismatchError, match="normalization .*CTNormalization.* Use offline mode"):
        trainer.initialize()


def test_teachers_with_other_labels_are_one_clear_error(world, tmp_path):
    from kt_nnunet.teachers.errors import TeacherMismatchError
    from kt_nnunet.training.transferring import prepare_transfer

    other = tmp_path / "other_teacher"
    shutil.copytree(world.teacher, other)
    dataset_json = json.loads((other / "dataset.json").read_text())
    dataset_json["labels"] = {"background": 0, "liver": 1, "spleen": 2}  # as many classes: the weights still fit
    (other / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(TeacherMismatchError, match=r"inconsistent with its teachers: teacher .*other_teacher: "
                                                   r"labels differ"):
        prepare_transfer([str(other)], DATASET, "light_unet", transfer=ONLINE, **BUDGET)


def test_online_hard_and_soft_students_train_and_stock_nnunet_predicts_them(world, tmp_path):
    """Stock nnUNetv2_train (through nnUNet_extTrainer) and nnUNetv2_predict with and without it."""
    from kt_nnunet.training import transfer
    from kt_nnunet.training.transferring import prepare_transfer

    hard = transfer([str(world.teacher)], DATASET, "light_unet", transfer=ONLINE, validate=False, **BUDGET)
    assert _checkpoint(hard)["kt_trainer_name"] == "nnUNetTrainerKTOnline"
    provenance = json.loads((hard / "kt_provenance.json").read_text())
    assert provenance["mode"] == "online" and provenance["teachers"][0]["model_folder"] == str(world.teacher)

    plan = prepare_transfer([str(world.teacher)], DATASET, "light_unet", transfer=ONLINE_SOFT, **BUDGET)
    env = dict(os.environ, nnUNet_extTrainer=str(EXT_TRAINER_FOLDER), nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
    train = subprocess.run(plan.train_command(1).split(), env=env, capture_output=True, text=True)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "soft targets T=2.0 alpha=0.5" in train.stdout
    soft = plan.model_folder()
    assert soft.name == "nnUNetTrainerKTOnlineSoft__ktOnline_light_unet__2d"
    assert _checkpoint(soft, 1)["trainer_name"] == "nnUNetTrainer"

    outputs = {}
    for with_ext in (False, True):
        predict_env = dict(env) if with_ext else {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
        out = tmp_path / f"predictions_ext{with_ext}"
        result = subprocess.run(
            ["nnUNetv2_predict", "-i", str(world.raw / "imagesTs"), "-o", str(out), "-d", str(DATASET), "-c", "2d",
             "-p", plan.plans_name, "-tr", plan.trainer, "-f", "1", "-device", "cpu", "-npp", "0", "-nps", "0",
             "--disable_tta"], env=predict_env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        outputs[with_ext] = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))}
    assert sorted(outputs[False]) == sorted(p.name for p in (world.raw / "labelsTs").iterdir())
    for name, prediction in outputs[False].items():
        assert np.array_equal(prediction, outputs[True][name]) and set(np.unique(prediction)) <= {0, 1, 2}


def test_finetuning_changes_weights_keeps_the_architecture_and_resumes(world, offline_student):
    from kt_nnunet.nnunet.training_api import TrainingError
    from kt_nnunet.training import finetune

    tuned = finetune(offline_student, DATASET, budget=FINETUNE_BUDGET, validate=False, num_processes=1)
    assert tuned.name == "nnUNetTrainerKTFinetune__ktFinetune_light_unet__2d"
    source_plans = json.loads((offline_student / "plans.json").read_text())["configurations"]["2d"]
    tuned_plans = json.loads((tuned / "plans.json").read_text())["configurations"]["2d"]
    assert tuned_plans["architecture"] == source_plans["architecture"]
    assert tuned_plans["data_identifier"].startswith("ktFinetune_2d_")
    assert tuned_plans["kt_budget"]["initial_lr"] == 1e-3
    before, after = _checkpoint(offline_student)["network_weights"], _checkpoint(tuned)["network_weights"]
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert _checkpoint(tuned)["trainer_name"] == "nnUNetTrainer"
    assert json.loads((tuned / "kt_provenance.json").read_text())["source"]["source_model"] == str(offline_student)

    with pytest.raises(TrainingError, match="pass --force"):
        finetune(offline_student, DATASET, budget=FINETUNE_BUDGET, num_processes=1)
    finetune(offline_student, DATASET, budget=FINETUNE_BUDGET, validate=False, continue_training=True,
             num_processes=1)  # finished: resumes, trains nothing more
    assert torch.equal(_checkpoint(tuned)["network_weights"][next(iter(after))], after[next(iter(after))])


def test_cli_plan_only_prints_the_stock_command_and_errors_are_one_line(world):
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    runner = CliRunner()
    args = ["transfer", "--teacher", str(world.teacher), "--dataset", str(DATASET), "--arch", "light_unet", "--tiny",
            "--epochs", "1", "--iterations", "2", "--val-iterations", "1", "-np", "1"]
    result = runner.invoke(main, args + ["--online", "--soft", "--plan-only"])
    assert result.exit_code == 0, result.output
    assert f"nnUNetv2_train Dataset{DATASET}_KTTransfer 2d 0 -p ktOnline_light_unet -tr nnUNetTrainerKTOnlineSoft" \
        in result.output
    result = runner.invoke(main, args + ["--soft"])  # offline soft needs the teachers' saved probabilities
    assert result.exit_code == 1 and "holds no teacher probabilities" in result.output \
        and "--save-probabilities" in result.output
    result = runner.invoke(main, args + ["--online", "--soft", "-T", "4", "--plan-only"])
    assert result.exit_code == 1 and "ktOnline_light_unet.json already holds a different '2d' configuration " \
                                     "(changed: kt_online); pass --force" in result.output


def test_offline_soft_student_learns_the_saved_probabilities_aligned_with_image_and_labels(world, offline_student,
                                                                                          monkeypatch):
    """The paper's offline path with soft targets: label with --save-probabilities, train on the probabilities.

    The probabilities reach nnU-Net's preprocessed grid exactly where the fused labels are (their argmax is the
    preprocessed segmentation), and stay aligned through augmentation (they move with the image).
    """
    import blosc2

    from kt_nnunet.nnunet.paths import preprocessed_folder
    from kt_nnunet.nnunet.soft_targets import soft_folder_of
    from kt_nnunet.nnunet.training_api import build_trainer
    from kt_nnunet.training import transfer
    from kt_nnunet.training.offline_soft import nnUNetTrainerKTOfflineSoft, temper
    from kt_nnunet.training.transferring import prepare_transfer

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # the batch below comes from the training process, seeded
    options = dict(labelled_out="Dataset953_KTSoftLabelled", transfer=TransferSettings("offline", True, 2.0, 0.5),
                   seed=0, **BUDGET)
    plan = prepare_transfer([f"{world.teacher}:0"], TRANSFERAL, "light_unet", **options)
    assert plan.trainer == "nnUNetTrainerKTOfflineSoft" and plan.plans_name == "ktOfflineSoft_light_unet_seed0"
    data_folder = preprocessed_folder() / plan.dataset_name / "nnUNetPlans_2d"
    for seg_file in sorted(data_folder.glob("*_seg.b2nd")):
        case = seg_file.name[:-len("_seg.b2nd")]
        soft = np.load(soft_folder_of(data_folder) / f"{case}.npy").astype(np.float32)
        seg = np.asarray(blosc2.open(urlpath=str(seg_file), mode="r")[:])
        assert soft.shape[1:] == seg.shape[1:] and np.allclose(soft.sum(0), 1.0, atol=1e-2)
        assert (soft.argmax(0) == seg[0]).mean() > 0.99, case

    trainer = build_trainer(nnUNetTrainerKTOfflineSoft, plan.dataset_name, "2d", 0, plan.plans_name)
    trainer.on_train_start()
    captured = []
    trainer.loss = lambda output, target: captured.append(target) or output[0].sum() * 0.0
    batch = next(trainer.dataloader_train)
    assert batch["data"].shape[1] == 1 + 3   # image + teacher probabilities
    trainer.train_step(batch)
    target = captured[0][0]
    labels, probabilities = target[:, :1], target[:, 1:]
    torch.testing.assert_close(probabilities, temper(batch["data"][:, 1:].float(), 2.0))
    # Labels are resampled as labels, probabilities bilinearly: they differ at boundaries, nowhere else. A
    # misaligned map (here: mirrored) agrees far less.
    agree = (probabilities.argmax(1, keepdim=True) == labels).float().mean()
    mirrored = (probabilities.flip(-1).argmax(1, keepdim=True) == labels).float().mean()
    assert agree > 0.9 and agree > mirrored + 0.05, f"agreement {agree:.3f} (mirrored: {mirrored:.3f})"

    student = transfer([f"{world.teacher}:0"], TRANSFERAL, "light_unet", validate=True, force=True, **options)
    assert _checkpoint(student)["trainer_name"] == "nnUNetTrainer"  # stock nnU-Net predicts it
    assert (student / "fold_0" / "validation" / "summary.json").is_file()  # full cases: image channels only
    assert json.loads((student / "kt_provenance.json").read_text())["mode"] == "offline-soft"
