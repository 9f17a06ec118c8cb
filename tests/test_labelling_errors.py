"""Every labelling error is a KtNnunetError with a message naming the teacher or file and the fix."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from labelling_teachers import make_model_folder, nnunet_plans, teachers, transferal, with_architecture  # noqa: F401
from refusals import one_error_line

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.labelling import (ChannelMismatchError, LabellingError, LabelMapError, OutputStateError,
                                 TeacherMismatchError, label_dataset)
from kt_nnunet.nnunet.model_folder import ModelFolderError
from kt_nnunet.teachers.methods import FusionSettings


def run(teacher_list, images, out, fusion: str = "mean", weights=None, min_confidence=None, **kwargs):
    return label_dataset(teacher_list, images, out, fusion=FusionSettings(fusion, weights, min_confidence, tta=False),
                         progress=False, **kwargs)


def test_teachers_with_different_labels_are_refused(teachers, transferal, tmp_path):  # noqa: F811
    with pytest.raises(TeacherMismatchError, match=r"teacher 1 .*renamed_labels.* has labels .*--label-map"):
        run([teachers["unet"], teachers["renamed"]], transferal, tmp_path / "Dataset820_X")


@pytest.mark.parametrize("label_map,message", [
    ('{"1": {"organ": "class1"}}', r"teacher 1 .* label 'lesion' maps to 'lesion', which is not an output label"),
    ({"1": {"tumour": "class1"}}, r"maps \['tumour'\] of teacher 1 .* no such label"),
    ({"5": {}}, r"key '5' is not a teacher index"),
    ({"1": {"organ": "class1", "lesion": "class1"}}, r"predicts nothing that maps to output label\(s\) \['class2'\]"),
    ({"labels": {"background": 0, "a": 2}}, r"without gaps"),
    ("{not json", r"neither a JSON file nor valid JSON"),
])
def test_bad_label_maps(teachers, transferal, tmp_path, label_map, message):  # noqa: F811
    with pytest.raises(LabelMapError, match=message):
        run([teachers["unet"], teachers["renamed"]], transferal, tmp_path / "Dataset821_X", label_map=label_map)


def test_teachers_with_different_channel_counts_are_refused(teachers, transferal, tmp_path):  # noqa: F811
    with pytest.raises(TeacherMismatchError, match=r"teacher 1 .*two_channels.* takes 2 input channel"):
        run([teachers["unet"], teachers["two_channel"]], transferal, tmp_path / "Dataset822_X")


def test_images_with_the_wrong_channel_count_name_the_file(teachers, transferal, tmp_path):  # noqa: F811
    images = tmp_path / "images"
    images.mkdir()
    source = transferal / "imagesTr" / "case_000_0000.nii.gz"
    shutil.copy(source, images / "a_0000.nii.gz")
    shutil.copy(source, images / "a_0001.nii.gz")
    with pytest.raises(ChannelMismatchError, match=r"a_0001\.nii\.gz: case 'a' has 2 channel files but the teachers "
                                                   r"take 1 channel"):
        run([teachers["unet"]], images, tmp_path / "Dataset823_X")
    with pytest.raises(ChannelMismatchError, match=r"a_0001\.nii\.gz: missing; the teachers take 2 channel"):
        (images / "a_0001.nii.gz").unlink()
        run([teachers["two_channel"]], images, tmp_path / "Dataset824_X")


def test_a_checkpoint_that_would_run_code_is_refused(teachers, transferal, tmp_path):  # noqa: F811
    class RunsCode:
        def __reduce__(self):
            return (print, ("this would run on load",))

    folder = tmp_path / "evil"
    shutil.copytree(teachers["unet"], folder)
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    checkpoint["logging"] = RunsCode()
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth", pickle_module=pickle)
    with pytest.raises(ModelFolderError, match="refused to load .*could execute"):
        run([folder], transferal, tmp_path / "Dataset825_X")


def test_an_unreadable_checkpoint_is_refused(teachers, transferal, tmp_path):  # noqa: F811
    folder = tmp_path / "broken"
    shutil.copytree(teachers["unet"], folder)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFolderError, match="cannot read checkpoint"):
        run([folder], transferal, tmp_path / "Dataset826_X")
    with pytest.raises(ModelFolderError, match="does not exist"):
        run([tmp_path / "nowhere"], transferal, tmp_path / "Dataset827_X")
    with pytest.raises(ModelFolderError, match="fold_3/checkpoint_final.pth does not exist"):
        run([f"{teachers['unet']}:3"], transferal, tmp_path / "Dataset828_X")


def test_argument_errors(teachers, transferal, tmp_path):  # noqa: F811
    with pytest.raises(LabellingError, match="DatasetNNN_Name"):
        run([teachers["unet"]], transferal, tmp_path / "labels")
    with pytest.raises(LabellingError, match="needs --weights"):
        run([teachers["unet"]], transferal, tmp_path / "Dataset829_X", fusion="weighted")
    with pytest.raises(LabellingError, match="needs 2 non-negative numbers"):
        run([teachers["unet"], teachers["light"]], transferal, tmp_path / "Dataset829_X", fusion="weighted",
            weights=[1])
    with pytest.raises(LabellingError, match=r"--min-confidence 1.5 must be in \(0, 1\]"):
        run([teachers["unet"]], transferal, tmp_path / "Dataset829_X", min_confidence=1.5)
    with pytest.raises(LabellingError, match="--part-id 2 must be in 0..1"):
        run([teachers["unet"]], transferal, tmp_path / "Dataset829_X", num_parts=2, part_id=2)
    with pytest.raises(KtNnunetError, match="no such folder"):
        run([teachers["unet"]], tmp_path / "no_images", tmp_path / "Dataset829_X")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KtNnunetError, match="holds no image files"):
        run([teachers["unet"]], empty, tmp_path / "Dataset829_X")


def test_existing_output_needs_force_unless_identical(teachers, transferal, tmp_path):  # noqa: F811
    out = tmp_path / "Dataset830_Out"
    run([teachers["unet"]], transferal, out)
    again = run([teachers["unet"]], transferal, out)  # same settings: complete, nothing to do
    assert again.complete and again.labelled == [] and len(again.skipped) == 4
    with pytest.raises(OutputStateError, match="already exists and was not labelled with these settings.*--force"):
        run([teachers["light"]], transferal, out)
    replaced = run([teachers["light"]], transferal, out, force=True)
    assert replaced.complete and len(replaced.labelled) == 4
    provenance = json.loads(replaced.provenance.read_text())
    assert provenance["teachers"][0]["model_folder"] == str(teachers["light"])
    with pytest.raises(KtNnunetError, match="already uses dataset id 830"):
        run([teachers["unet"]], transferal, tmp_path / "Dataset830_Other")


def test_cli_prints_errors_as_one_line(teachers, transferal, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    result = CliRunner().invoke(main, ["label", "--teacher", str(teachers["unet"]), "--teacher",
                                       str(teachers["renamed"]), "--images", str(transferal), "--out",
                                       str(tmp_path / "Dataset831_X")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: teacher 1") and result.output.count("\n") == 1
    bad_weights = CliRunner().invoke(main, ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal),
                                            "--out", str(tmp_path / "Dataset831_X"), "--weights", "a,b"])
    assert bad_weights.exit_code == 2 and "--weights" in bad_weights.output


def test_cli_fusion_choices_are_the_fusion_methods():
    from kt_nnunet.cli.label import FUSION_METHODS as choices
    from kt_nnunet.teachers.methods import FUSION_METHODS

    assert choices == FUSION_METHODS


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


def test_broken_teacher_folders_give_one_error_line_naming_the_file(nnunet_env, transferal, tmp_path):  # noqa: F811
    """Checkpoints and plans from others: broken teacher folders fed to `kt-nnunet label` give one `Error:`
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


def test_label_checks_its_options_before_creating_the_work_folder(nnunet_env, teachers, transferal,  # noqa: F811
                                                                  tmp_path):
    """--step-size, --device and the images are checked before the hidden work folder exists."""
    base = ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out",
            str(tmp_path / "out" / "Dataset834_Order"), "--no-tta", "--no-progress"]
    for bad in (["--step-size", "2"], ["--device", "tpu"], ["--num-parts", "2", "--part-id", "5"]):
        one_error_line(base + bad)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), bad
