"""Any model as a teacher: exported networks, predictions folders, mixed kinds, and a plugin's own kind.

The reference is always the teacher's own model folder labelling the same images (itself checked against
stock nnU-Net in test_labelling.py), so every other kind must give its labels.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from kt_nnunet.teachers.methods import FusionSettings
from fake_plugins import THRESHOLD_KIND_PLUGIN
from labelling_teachers import labels_of, read_label, teachers, transferal  # noqa: F401  (fixtures)

from kt_nnunet.labelling import label_dataset
from kt_nnunet.teachers.errors import PredictionsFolderError, TeacherKindError


def probabilities_of(dataset, case="case_000"):
    return np.load(dataset / "probabilitiesTr" / f"{case}.npz")["probabilities"].astype(np.float32)


@pytest.fixture(scope="module")
def reference(teachers, transferal, tmp_path_factory):  # noqa: F811
    """Each teacher's own model-folder labelling (labels and float16 soft labels)."""
    out = tmp_path_factory.mktemp("reference")
    return {name: label_dataset([teachers[name]], transferal, out / f"Dataset{860 + i}_{name}",
                                save_probabilities=True, progress=False).dataset
            for i, name in enumerate(("unet", "light", "ct2mm"))}


@pytest.fixture(scope="module")
def exported(teachers, tmp_path_factory):  # noqa: F811
    from kt_nnunet.deploy.export import export_model

    out = tmp_path_factory.mktemp("exported")
    return {"onnx": export_model(teachers["light"], out / "light.onnx", format="onnx").networks[0],
            "torchscript": export_model(teachers["light"], out / "light_ts.pt", format="torchscript").networks[0]}


@pytest.fixture(scope="module")
def stock_predictions(teachers, transferal, tmp_path_factory):  # noqa: F811
    """What stock ``nnUNetv2_predict_from_modelfolder --save_probabilities`` writes for the CT teacher."""
    out = tmp_path_factory.mktemp("stock_ct2mm")
    command = [shutil.which("nnUNetv2_predict_from_modelfolder") or "nnUNetv2_predict_from_modelfolder",
               "-i", str(transferal / "imagesTr"), "-o", str(out), "-m", str(teachers["ct2mm"]), "-f", "0",
               "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return out


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_an_exported_network_labels_like_its_model_folder(exported, transferal, reference, tmp_path, kind):  # noqa: F811
    """`kt-nnunet export` then `--teacher onnx:FILE` (and the bare file, its kind found from the sidecar)."""
    explicit = label_dataset([f"{kind}:{exported[kind]}"], transferal, tmp_path / "Dataset870_Explicit",
                             save_probabilities=True, progress=False)
    bare = label_dataset([exported[kind]], transferal, tmp_path / "Dataset871_Bare", progress=False)
    ours, theirs = labels_of(explicit.dataset), labels_of(reference["light"])
    assert ours.keys() == theirs.keys() and len(ours) == 4
    for case in ours:
        assert np.array_equal(ours[case], theirs[case]), case
    assert labels_of(bare.dataset).keys() == ours.keys()
    np.testing.assert_allclose(probabilities_of(explicit.dataset), probabilities_of(reference["light"]), atol=2e-3)
    provenance = json.loads(explicit.provenance.read_text())["teachers"][0]
    assert provenance["kind"] == kind and len(provenance["networks"]["0"]["sha256"]) == 64
    assert len(provenance["sidecar"]["sha256"]) == 64


def test_a_hand_written_sidecar_describes_a_network_from_elsewhere(teachers, transferal, reference, tmp_path):  # noqa: F811
    """A TorchScript file plus the minimal description (channels and normalisation with CT statistics, spacing,
    patch size, labels): the same labels as the CT teacher's own model folder, resampled from its 2 mm grid."""
    import torch

    from kt_nnunet.nnunet.model_folder import load_trained_model

    model = load_trained_model(teachers["ct2mm"])
    network = model.load_fold_networks()[0]
    patch = list(model.configuration_manager.patch_size)
    with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit; vendors' files are TorchScript all the same
        warnings.simplefilter("ignore")
        torch.jit.trace(network, torch.zeros(1, 1, *patch)).save(str(tmp_path / "vendor.pt"))
    statistics = model.plans["foreground_intensity_properties_per_channel"]["0"]
    (tmp_path / "vendor.json").write_text(json.dumps({
        "kind": "kt-nnunet-network", "format": 1, "network": "vendor.pt",
        "channels": [{"name": "CT", "normalization": "CTNormalization", "intensity": statistics}],
        "spacing": list(model.configuration_manager.spacing), "patch_size": patch, "labels": model.labels}))
    result = label_dataset([f"torchscript:{tmp_path / 'vendor.pt'}"], transferal, tmp_path / "Dataset872_Vendor",
                           progress=False)
    ours, theirs = labels_of(result.dataset), labels_of(reference["ct2mm"])
    for case in theirs:
        assert np.array_equal(ours[case], theirs[case]), case
    recorded = json.loads(result.provenance.read_text())["teachers"][0]["sidecar"]
    assert recorded["content"]["channels"][0]["normalization"] == "CTNormalization"
    from kt_nnunet.deploy.predict import predict  # `kt-nnunet predict` reads the same sidecar

    predicted = predict(tmp_path / "vendor.pt", transferal / "imagesTr", tmp_path / "predicted", tta=True)
    assert predicted.backend == "torchscript"
    for case in theirs:
        assert np.array_equal(read_label(tmp_path / "predicted" / case), theirs[case]), case

    description = json.loads((tmp_path / "vendor.json").read_text())
    del description["channels"][0]["intensity"]
    (tmp_path / "vendor.json").write_text(json.dumps(description))
    with pytest.raises(Exception, match=r"vendor.json: channel 0 uses CTNormalization, which needs \"intensity\""):
        label_dataset([tmp_path / "vendor.pt"], transferal, tmp_path / "Dataset873_Bad", progress=False)


def test_stock_nnunet_predictions_label_like_the_model_folder(stock_predictions, transferal, reference,  # noqa: F811
                                                              tmp_path):
    """A folder written by stock `nnUNetv2_predict --save_probabilities` (probabilities .npz, label maps,
    plans.json and dataset.json): found as a predictions folder without a prefix, its probabilities used."""
    result = label_dataset([stock_predictions], transferal, tmp_path / "Dataset874_Stock", save_probabilities=True,
                           progress=False)
    ours, theirs = labels_of(result.dataset), labels_of(reference["ct2mm"])
    for case in theirs:
        assert np.array_equal(ours[case], theirs[case]), case
        assert np.array_equal(ours[case], read_label(stock_predictions / case)), case
    np.testing.assert_allclose(probabilities_of(result.dataset), probabilities_of(reference["ct2mm"]), atol=2e-3)
    teacher = json.loads(result.provenance.read_text())["teachers"][0]
    assert teacher["kind"] == "predictions" and teacher["mode"] == "npz" and not teacher["hard_labels"]
    assert sorted(teacher["files"]) == ["case_000", "case_001", "case_002", "case_003"]


def test_mixed_kinds_fuse_like_three_model_folders(teachers, exported, stock_predictions, transferal,  # noqa: F811
                                                   tmp_path):
    folders = label_dataset([teachers["unet"], teachers["light"], teachers["ct2mm"]], transferal,
                            tmp_path / "Dataset875_Folders", save_probabilities=True, progress=False)
    mixed = label_dataset([teachers["unet"], f"onnx:{exported['onnx']}", f"predictions:{stock_predictions}"],
                          transferal, tmp_path / "Dataset876_Mixed", save_probabilities=True, progress=False)
    ours, theirs = labels_of(mixed.dataset), labels_of(folders.dataset)
    for case in theirs:
        assert np.array_equal(ours[case], theirs[case]), case
    np.testing.assert_allclose(probabilities_of(mixed.dataset), probabilities_of(folders.dataset), atol=2e-3)
    kinds = [t["kind"] for t in json.loads(mixed.provenance.read_text())["teachers"]]
    assert kinds == ["nnunet", "onnx", "predictions"]


@pytest.fixture
def hard_predictions(stock_predictions, tmp_path):
    """Only the label maps and dataset.json of a stock prediction (what most tools write)."""
    folder = tmp_path / "hard"
    folder.mkdir()
    for file in stock_predictions.iterdir():
        if file.name.endswith(".nii.gz") or file.name == "dataset.json":
            shutil.copy(file, folder / file.name)
    return folder


def test_label_maps_fuse_by_vote_and_warn_under_mean(hard_predictions, teachers, transferal, reference, tmp_path):  # noqa: F811
    alone = label_dataset([f"predictions:{hard_predictions}"], transferal, tmp_path / "Dataset877_Hard",
                          fusion=FusionSettings("majority"), progress=False)
    for case, labels in labels_of(reference["ct2mm"]).items():
        assert np.array_equal(labels_of(alone.dataset)[case], labels), case
    with pytest.warns(Warning, match=r"give label maps, not probabilities: mean fusion takes them as one-hot"):
        label_dataset([teachers["unet"], hard_predictions], transferal, tmp_path / "Dataset878_Mean",
                      progress=False)
    staple = label_dataset([teachers["unet"], teachers["light"], hard_predictions], transferal,
                           tmp_path / "Dataset879_Staple", fusion=FusionSettings("staple"), progress=False)
    assert staple.complete and len(labels_of(staple.dataset)) == 4


def test_a_changed_prediction_file_invalidates_the_labelling(hard_predictions, transferal, tmp_path):  # noqa: F811
    out = tmp_path / "Dataset880_Resume"
    label_dataset([hard_predictions], transferal, out, fusion=FusionSettings("majority"), progress=False)
    again = label_dataset([hard_predictions], transferal, out, fusion=FusionSettings("majority"), progress=False)
    assert again.labelled == [] and len(again.skipped) == 4  # unchanged: nothing to redo
    file = hard_predictions / "case_002.nii.gz"
    labels = read_label(file)
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.where(labels == 1, 2, labels).astype(labels.dtype))
    image.CopyInformation(sitk.ReadImage(str(file)))
    sitk.WriteImage(image, str(file))
    with pytest.raises(Exception, match="not labelled with these settings; pass --force"):
        label_dataset([hard_predictions], transferal, out, fusion=FusionSettings("majority"), progress=False)


def test_predictions_folder_errors_name_the_file(hard_predictions, transferal, tmp_path):  # noqa: F811
    (hard_predictions / "case_001.nii.gz").unlink()
    with pytest.raises(PredictionsFolderError, match=r"no prediction for transferal case 'case_001'"):
        label_dataset([hard_predictions], transferal, tmp_path / "Dataset881_Missing", progress=False)
    assert not (tmp_path / "Dataset881_Missing").exists()

    import SimpleITK as sitk

    small = sitk.GetImageFromArray(np.zeros((1, 32, 32), dtype=np.uint8))
    sitk.WriteImage(small, str(hard_predictions / "case_001.nii.gz"))
    with pytest.raises(PredictionsFolderError, match=r"case_001.nii.gz: spacing|case_001.nii.gz: label map of shape"):
        label_dataset([hard_predictions], transferal, tmp_path / "Dataset882_Shape", progress=False)
    assert not (tmp_path / "Dataset882_Shape").exists()

    (hard_predictions / "dataset.json").unlink()
    with pytest.raises(PredictionsFolderError, match=r"dataset.json is missing: a predictions teacher needs"):
        label_dataset([f"predictions:{hard_predictions}"], transferal, tmp_path / "Dataset883_NoLabels",
                      progress=False)


def test_kind_errors_are_one_clear_line(exported, teachers, transferal, tmp_path):  # noqa: F811
    with pytest.raises(TeacherKindError, match=r"unknown teacher kind 'onxx' \(did you mean 'onnx'\?\)"):
        label_dataset([f"onxx:{exported['onnx']}"], transferal, tmp_path / "Dataset884_A", progress=False)
    with pytest.raises(TeacherKindError, match=r"describes a onnx network; give it as onnx:"):
        label_dataset([f"torchscript:{exported['onnx']}"], transferal, tmp_path / "Dataset884_A", progress=False)
    (tmp_path / "weights.pth").write_bytes(b"x")
    with pytest.raises(TeacherKindError, match=r"weights.pth is a file, not a model folder, and no teacher kind reads it"):
        label_dataset([tmp_path / "weights.pth"], transferal, tmp_path / "Dataset884_A", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherKindError, match=r"neither a model folder .* nor a folder of predictions"):
        label_dataset([tmp_path / "empty"], transferal, tmp_path / "Dataset884_A", progress=False)
    with pytest.raises(Exception, match="online transfer runs the teachers' networks"):
        from kt_nnunet.teachers.loading import load_teacher
        from kt_nnunet.teachers.spec import TeacherSpec

        load_teacher(TeacherSpec.parse(f"onnx:{exported['onnx']}"))


@pytest.mark.parametrize(("text", "kind", "path", "folds"), [
    ("onnx:net.onnx:0,1", "onnx", "net.onnx", (0, 1)),
    ("Dataset501_Src/nnUNetTrainer__nnUNetPlans__2d", None, "Dataset501_Src/nnUNetTrainer__nnUNetPlans__2d", None),
    ("DIR:0:all", None, "DIR:0", None),          # a folder whose own name ends in ":0"
    ("./word:rest", None, "word:rest", None),     # a path whose name starts with "word:"
    ("onxx:anything", "onxx", "anything", None),  # an unknown kind is refused when resolved, not here
])
def test_parsing_a_teacher_reads_the_text_only(monkeypatch, text, kind, path, folds):
    import pathlib

    from kt_nnunet.plugins import manager
    from kt_nnunet.teachers.spec import TeacherSpec

    def forbidden(*args, **kwargs):
        raise AssertionError("TeacherSpec.parse looked at the disk or loaded the plugins")

    for method in ("exists", "is_dir", "is_file", "stat", "glob", "iterdir", "resolve"):
        monkeypatch.setattr(pathlib.Path, method, forbidden)
    monkeypatch.setattr(manager, "get_plugin_manager", forbidden)
    spec = TeacherSpec.parse(text)
    assert (spec.kind, spec.path, spec.folds) == (kind, pathlib.Path(path), folds)


def test_the_teacher_spec_module_imports_no_kinds_and_no_plugins():
    code = ("import sys; from kt_nnunet.teachers.spec import TeacherSpec; TeacherSpec.parse('onnx:x.onnx:0'); "
            "print('kt_nnunet.teachers.kinds' in sys.modules, 'kt_nnunet.plugins.manager' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_resolving_a_spec_finds_its_kind_and_absolute_path(teachers, exported, tmp_path, monkeypatch):  # noqa: F811
    from kt_nnunet.nnunet.model_folder import ModelFolderError
    from kt_nnunet.teachers.kinds import resolve_kind
    from kt_nnunet.teachers.loading import load_teacher
    from kt_nnunet.teachers.spec import TeacherSpec

    monkeypatch.chdir(teachers["unet"].parent)
    spec = TeacherSpec.parse(f"{teachers['unet'].name}:0")
    with pytest.raises(ValueError, match="resolve its kind first"):  # the kind decides what a model folder means
        load_teacher(spec)
    resolved = resolve_kind(spec)
    assert (resolved.kind, resolved.path, resolved.folds) == ("nnunet", teachers["unet"].absolute(), (0,))
    assert resolve_kind(resolved) == resolved
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(teachers["unet"].parent))
    assert resolve_kind(spec).path == teachers["unet"].absolute()  # the same name, found under $nnUNet_results
    assert resolve_kind(TeacherSpec.parse(exported["onnx"])).kind == "onnx"
    with pytest.raises(TeacherKindError, match=r"unknown teacher kind 'onxx' \(did you mean 'onnx'\?\)"):
        resolve_kind(TeacherSpec.parse("onxx:anything"))
    with pytest.raises(ModelFolderError, match=r"predictions teacher .*nowhere does not exist"):
        resolve_kind(TeacherSpec.parse(f"predictions:{tmp_path / 'nowhere'}"))


def test_a_plugin_adds_a_teacher_kind_used_by_kt_nnunet_label(fake_entry_points, transferal, nnunet_env,  # noqa: F811
                                                              tmp_path):
    from click.testing import CliRunner

    from kt_nnunet.cli import main
    from kt_nnunet.nnunet.raw_dataset import read_images

    fake_entry_points("thresholds", source=textwrap.dedent(THRESHOLD_KIND_PLUGIN))
    image, _ = read_images([transferal / "imagesTr" / "case_000_0000.nii.gz"])
    thresholds = [float(np.percentile(image, 40)), float(np.percentile(image, 80))]
    rules = tmp_path / "rules.threshold.json"
    rules.write_text(json.dumps({"labels": {"background": 0, "class1": 1, "class2": 2}, "thresholds": thresholds}))
    out = tmp_path / "Dataset885_Thresholds"
    result = CliRunner().invoke(main, ["label", "--teacher", f"threshold:{rules}", "--images", str(transferal),
                                       "--out", str(out), "--fusion", "majority", "--no-progress"])
    assert result.exit_code == 0, result.output
    expected = np.digitize(image[0, 0], thresholds)
    assert np.array_equal(read_label(out / "labelsTr" / "case_000.nii.gz"), expected)
    assert json.loads((out / "provenance.json").read_text())["teachers"][0]["kind"] == "threshold"
    bare = CliRunner().invoke(main, ["label", "--teacher", str(rules), "--images", str(transferal), "--out",
                                     str(tmp_path / "Dataset886_Bare"), "--fusion", "majority", "--no-progress"])
    assert bare.exit_code == 0, bare.output
    wrong = CliRunner().invoke(main, ["label", "--teacher", f"thresold:{rules}", "--images", str(transferal),
                                      "--out", str(tmp_path / "Dataset887_X"), "--no-progress"])
    assert wrong.exit_code == 1 and "did you mean 'threshold'" in wrong.output


AMBIGUOUS_KIND_PLUGIN = '''
from kt_nnunet.plugins import hookimpl
from kt_nnunet.teachers.kinds import TeacherKind


@hookimpl
def register_teacher_kinds(register):
    register(TeacherKind(name="greedy", open=lambda spec, options: None, claims=lambda path: path.is_dir()))
'''


def test_a_path_two_kinds_claim_is_refused_as_ambiguous(fake_entry_points, stock_predictions, transferal,  # noqa: F811
                                                        tmp_path):
    fake_entry_points("greedy", source=textwrap.dedent(AMBIGUOUS_KIND_PLUGIN))
    with pytest.raises(TeacherKindError, match=r"could be a predictions or a greedy teacher; say which, e\.g\. "
                                               r"--teacher predictions:"):
        label_dataset([stock_predictions], transferal, tmp_path / "Dataset888_Ambiguous", progress=False)
    with pytest.raises(TeacherKindError, match=r"kind 'greedy' from plugin 'greedy' returned NoneType"):
        label_dataset([f"greedy:{stock_predictions}"], transferal, tmp_path / "Dataset888_Ambiguous",
                      progress=False)


EXPERIMENT = """
name: kinds
output: {output}
budget: {{epochs: 1, iterations_per_epoch: 3, val_iterations_per_epoch: 1}}
transferal: {transferal}
test: {{dataset: {test}, split: test}}
teachers:
  - {{model_folder: {folder}, name: folder_teacher}}
  - {{onnx: {onnx}, name: exported_teacher}}
  - {{predictions: {predictions}, name: predicted_teacher}}
students:
  - {{architecture: light_unet, tiny: true}}
modes: [multi_teacher]
evaluation: {{mirroring: false, warmup: false, overlay_cases: 0}}
"""


@pytest.mark.slow
def test_an_experiment_fuses_teachers_of_three_kinds(teachers, exported, stock_predictions, transferal,  # noqa: F811
                                                     nnunet_env, tmp_path):
    """A config names each kind; the student learns their fused labels; only the model folder is scored, and the
    report says which teachers were not (so no "beats the best teacher" claim is made)."""
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.experiment.runner import run_experiment

    test = tiny_dataset(793, "KindsTest", num_train=2, num_test=2, seed=11)
    config = tmp_path / "experiment.yaml"
    config.write_text(EXPERIMENT.format(output=tmp_path / "run", transferal=transferal, test=test,
                                        folder=teachers["unet"], onnx=exported["onnx"],
                                        predictions=stock_predictions))
    results = json.loads(run_experiment(config).read_text())
    assert [m["name"] for m in results["models"]] == ["folder_teacher", "light_unet_multi"]
    assert [(t["name"], t["kind"]) for t in results["unscored_teachers"]] == [
        ("exported_teacher", "onnx"), ("predicted_teacher", "predictions")]
    assert results["comparisons"] == [] and results["claims"] == []
    labelled = next(r for r in results["labelling"] if len(r["teachers"]) == 3)
    provenance = json.loads(open(labelled["provenance"]).read())
    assert [t["kind"] for t in provenance["teachers"]] == ["nnunet", "onnx", "predictions"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Teachers not scored on the test set" in report and "predicted_teacher" in report

    config.write_text(config.read_text() + "transfer: {mode: online}\n")
    from kt_nnunet.experiment.schema import ExperimentConfigError

    with pytest.raises(ExperimentConfigError, match=r"transfer\.mode: online transfer .* teachers\[1\] is a onnx"):
        run_experiment(config)
