"""Deployment: lean `predict` (labels equal nnUNetv2_predict's), ONNX / TorchScript export, the CLI.

Model folders hold randomly initialised networks (tests/labelling_teachers.py): only equality of outputs
between paths matters here, not their quality.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from labelling_teachers import make_model_folder, nnunet_plans, read_label, with_architecture

BUILTIN_ARCHITECTURES = ("attention_unet", "deeplabv3plus", "light_unet", "nnunet_plain", "nnunet_resenc",
                         "segresnet", "transunet", "unet", "unetpp")


def _bin(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or name


def _labels(folder: Path) -> dict:
    return {p.name: read_label(p) for p in sorted(Path(folder).glob("*.nii.gz"))}


def _plans_3d(plans_2d: dict) -> dict:
    """The 2D test plans as a 3d_fullres configuration (32^3 patch, 3D PlainConvUNet)."""
    plans = copy.deepcopy(plans_2d)
    config = plans["configurations"].pop("2d")
    config.update(data_identifier="nnUNetPlans_3d_fullres", patch_size=[32, 32, 32], spacing=[1.0, 1.0, 1.0],
                  median_image_size_in_voxels=[32.0, 32.0, 32.0])
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs.update(conv_op="torch.nn.modules.conv.Conv3d", norm_op="torch.nn.modules.instancenorm.InstanceNorm3d",
                  kernel_sizes=[[3, 3, 3]] * 4, strides=[[1, 1, 1]] + [[2, 2, 2]] * 3)
    plans["configurations"]["3d_fullres"] = config
    plans["original_median_spacing_after_transp"] = [1.0, 1.0, 1.0]
    return plans


def _fresh_model_folder(folder: Path, plans: dict, configuration: str) -> Path:
    """A model folder whose network keeps torch's default initialisation (logits of order 1)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder.mkdir(parents=True)
    dataset_json = {"channel_names": {"0": "image"}, "labels": {"background": 0, "a": 1, "b": 2},
                    "numTraining": 2, "file_ending": ".nii.gz"}
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    manager = PlansManager(plans)
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(manager, manager.get_configuration(configuration), 1, 3,
                                                       enable_deep_supervision=False)
    (folder / "fold_0").mkdir()
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": configuration}, "inference_allowed_mirroring_axes": (0, 1)},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _architecture_plans(architecture: str, dim: int) -> tuple[dict, str]:
    from kt_nnunet.training.plans import architecture_plans
    from kt_nnunet.registry import get_architecture

    base = nnunet_plans() if dim == 2 else _plans_3d(nnunet_plans())
    configuration = "2d" if dim == 2 else "3d_fullres"
    if architecture == "nnunet_plain":
        return base, configuration
    return architecture_plans(base, configuration, get_architecture(architecture), tiny=True), configuration


# ------------------------------------------------------------------------------------------ export
# ~4 s per ONNX export on 2 cores: the student runs in the fast suite, the other architectures with the slow tests
@pytest.mark.parametrize("architecture,dim", [pytest.param(a, 2, marks=() if a == "light_unet" else pytest.mark.slow)
                                              for a in BUILTIN_ARCHITECTURES]
                         + [pytest.param("light_unet", 3, marks=pytest.mark.slow)])
def test_exported_logits_match_pytorch(architecture, dim, tmp_path):
    from kt_nnunet.deploy.export import export_model
    from kt_nnunet.exported.runtime import OnnxNetwork, load_torchscript
    from kt_nnunet.nnunet.model_folder import load_trained_model

    plans, configuration = _architecture_plans(architecture, dim)
    folder = _fresh_model_folder(tmp_path / "model", plans, configuration)
    network = load_trained_model(folder).load_fold_networks()[0]
    patch = plans["configurations"][configuration]["patch_size"]
    # a batch size other than the export's check batch (2): the batch axis must really be dynamic
    x = torch.randn((3, 1, *patch), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = network(x)
    assert expected.abs().max() > 0.1  # not a degenerate network whose outputs would match anything
    formats = ("onnx", "torchscript") if dim == 2 else ("onnx",)
    for fmt in formats:
        result = export_model(folder, tmp_path / fmt / "net", format=fmt)
        path = result.networks[0]
        exported = OnnxNetwork(path, 2) if fmt == "onnx" else load_torchscript(path, 2)
        with torch.inference_mode():
            got = exported(x)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) < 1e-4, (architecture, fmt)
        assert result.max_abs_difference[0] < 1e-4
        sidecar = json.loads(result.sidecar.read_text())
        assert sidecar["format"] == 1 and sidecar["network_format"] == fmt and sidecar["folds"] == [0]
        assert sidecar["configuration"] == configuration and sidecar["plans"] == plans
        assert sidecar["dataset_json"]["labels"] == {"background": 0, "a": 1, "b": 2}
        assert sidecar["input"]["shape"] == ["batch", 1, *patch]


def test_several_folds_export_one_file_each_and_unknown_sidecars_are_refused(tmp_path):
    from kt_nnunet.deploy.export import ExportError, export_model
    from kt_nnunet.exported.sidecar import ExportedModelError, read_sidecar

    folder = make_model_folder(tmp_path / "model", with_architecture(nnunet_plans(), "light_unet"), folds=(0, 1))
    result = export_model(folder, tmp_path / "out" / "student.pt", format="torchscript")  # fast; naming is shared
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["student.json", "student_fold0.pt",
                                                                     "student_fold1.pt"]
    assert read_sidecar(tmp_path / "out" / "student_fold1.pt")["networks"] == {"0": "student_fold0.pt",
                                                                                "1": "student_fold1.pt"}
    with pytest.raises(ExportError, match="describes a torchscript export"):
        export_model(folder, tmp_path / "out" / "student.onnx", format="onnx")
    sidecar = json.loads(result.sidecar.read_text())
    result.sidecar.write_text(json.dumps(dict(sidecar, format=99)))
    with pytest.raises(ExportedModelError, match="format 99"):
        read_sidecar(result.sidecar)
    (tmp_path / "lonely.onnx").write_bytes(b"")
    with pytest.raises(ExportedModelError, match="lonely.json is missing"):
        read_sidecar(tmp_path / "lonely.onnx")


def test_deploy_package_imports_no_torch():
    code = ("import sys, kt_nnunet, kt_nnunet.deploy, kt_nnunet.exported.sidecar, kt_nnunet.cli.deploy; "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """3 64x64 cases with 3 labels each."""
    from kt_nnunet.data import tiny_dataset

    return tiny_dataset(795, "Deploy", out=tmp_path_factory.mktemp("raw"), num_train=3, num_test=0,
                        seed=3) / "imagesTr"


def _stock_predict(results: Path, model: Path, images: Path, out: Path, *extra) -> dict:
    """Real ``nnUNetv2_predict`` (the sequential CPU path), as a user runs it, on a model under nnUNet_results."""
    env = dict(os.environ, nnUNet_results=str(results), nnUNet_raw=str(results), nnUNet_preprocessed=str(results),
               nnUNet_def_n_proc="1")
    trainer, plans, configuration = model.name.split("__")
    done = subprocess.run([_bin("nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", model.parent.name,
                           "-tr", trainer, "-p", plans, "-c", configuration, "-f", "0", "1", "-device", "cpu",
                           "-npp", "0", "-nps", "0", "--disable_progress_bar", *extra],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return _labels(out)


@pytest.mark.slow
def test_lean_predict_equals_nnunetv2_predict(images, tmp_path):
    """2 folds, resampling (0.8 mm plans for 1 mm images) and 16 patches per image, batched: same labels."""
    from kt_nnunet.deploy.predict import load_predictor, predict

    results = tmp_path / "results"
    plans = with_architecture(nnunet_plans(spacing=(0.8, 0.8), patch=(32, 32)), "unet")
    model = make_model_folder(results / "Dataset795_Deploy" / "nnUNetTrainer__ktPlans_unet__2d", plans,
                              folds=(0, 1), seed=7)  # a seed whose labels hold all 3 classes
    predictor = load_predictor(model, tta=True)
    assert predictor.batch_size == 16 and len(predictor.fold_networks) == 2
    for tta, extra in ((True, ()), (False, ("--disable_tta",))):
        stock = _stock_predict(results, model, images, tmp_path / f"stock_{tta}", *extra)
        assert sorted(stock) == ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]
        assert all(len(np.unique(a)) == 3 for a in stock.values())  # every class appears: a sensitive test
        lean = predict(model, images, tmp_path / f"lean_{tta}", tta=tta)
        assert lean.cases == ["case_000", "case_001", "case_002"] and lean.tta is tta
        got = _labels(tmp_path / f"lean_{tta}")
        for name, expected in stock.items():
            assert got[name].shape == expected.shape == (64, 64)
            np.testing.assert_array_equal(got[name], expected, err_msg=f"{name}, TTA {tta}")
    # the comparison can fail: TTA changes labels on these networks
    on, off = _labels(tmp_path / "lean_True"), _labels(tmp_path / "lean_False")
    assert any((on[n] != off[n]).any() for n in on)


@pytest.fixture(scope="module")
def demo_test_set(tmp_path_factory):
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["data", "demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return next(out.glob("Dataset*Test")) / "imagesTr"


@pytest.mark.slow
def test_onnx_labels_equal_pytorch_labels_on_the_demo_test_set(demo_test_set, tmp_path):
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    # demo images are 98x116 at 2 mm: the 64x64 patch slides over 2x3 positions
    model = make_model_folder(tmp_path / "nnUNetTrainer__ktPlans_light_unet__2d",
                              with_architecture(nnunet_plans(spacing=(2.0, 2.0)), "light_unet"), seed=6)
    runner = CliRunner()
    exported = runner.invoke(main, ["export", str(model), "--format", "onnx", "-o", str(tmp_path / "exp" / "s.onnx")])
    assert exported.exit_code == 0, exported.output
    assert "sidecar:" in exported.output and (tmp_path / "exp" / "s.json").is_file()
    outputs = {}
    for name, model_arg in (("torch", model), ("onnx", tmp_path / "exp" / "s.onnx")):
        run = runner.invoke(main, ["predict", "-m", str(model_arg), "-i", str(demo_test_set), "-o",
                                   str(tmp_path / name)])
        assert run.exit_code == 0, run.output
        assert f"({name}, TTA off" in run.output and "cases/s" in run.output
        assert "[13/13]" in run.output  # plain progress lines when not on a terminal
        outputs[name] = _labels(tmp_path / name)
    assert len(outputs["torch"]) == 13
    for case, labels in outputs["torch"].items():
        assert labels.shape == read_label(demo_test_set / case.replace(".nii.gz", "_0000.nii.gz")).shape
        np.testing.assert_array_equal(outputs["onnx"][case], labels, err_msg=case)
    assert len(np.unique(np.concatenate([a.ravel() for a in outputs["torch"].values()]))) >= 2


def test_cli_predict_help_says_tta_is_off_and_errors_are_one_line(images, tmp_path):
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    runner = CliRunner()
    help_text = runner.invoke(main, ["predict", "--help"]).output
    assert "--tta / --no-tta" in help_text and "OFF by default" in help_text and "[default: no-tta]" in help_text
    missing = runner.invoke(main, ["predict", "-m", str(tmp_path / "nope.onnx"), "-i", str(images), "-o",
                                   str(tmp_path / "o")])
    assert missing.exit_code == 1 and "nope.onnx does not exist" in missing.output
    assert "Traceback" not in missing.output and len(missing.output.strip().splitlines()) == 1
    model = make_model_folder(tmp_path / "m", nnunet_plans(num_channels=2), seed=1)
    wrong = runner.invoke(main, ["predict", "-m", str(model), "-i", str(images), "-o", str(tmp_path / "o")])
    assert wrong.exit_code == 1 and "has 1 channel file(s) but the model takes 2" in wrong.output


def test_predict_overlaps_reading_and_reports_forward_time(images, tmp_path):
    from kt_nnunet.deploy.predict import predict

    model = make_model_folder(tmp_path / "m", with_architecture(nnunet_plans(patch=(32, 32)), "light_unet"), seed=2)
    seen = []
    result = predict(model, images, tmp_path / "out", batch_size=3, threads=1,
                     progress=lambda done, total, case: seen.append((done, total, case)))
    assert seen == [(1, 3, "case_000"), (2, 3, "case_001"), (3, 3, "case_002")]
    assert result.batch_size == 3 and result.threads == 1 and result.cases_per_second > 0
    assert 0 < result.forward_seconds <= result.seconds
    cases = ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]  # one per image of `images`
    # one label file per image and nothing else: no `.partial-*` file left behind, and something was written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == cases
    # batch size does not change the labels
    predict(model, images, tmp_path / "b1", batch_size=1)
    one, three = _labels(tmp_path / "b1"), _labels(tmp_path / "out")
    assert list(one) == list(three) == cases
    assert all(one[n].shape == (64, 64) and (one[n] == three[n]).all() for n in one)


# ------------------------------------------------------------------------------------------ report
def test_inference_timing_and_report_show_the_lean_path(tmp_path):
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.experiment.report import results_table
    from kt_nnunet.experiment.results import compare_models
    from kt_nnunet.experiment.tables import comparison_rows
    from kt_nnunet.evaluation.timing import time_inference

    test = tiny_dataset(796, "Timing", out=tmp_path / "raw", num_train=1, num_test=1, seed=2)
    folders = {"teacher": make_model_folder(tmp_path / "t", nnunet_plans(), seed=1),
               "student": make_model_folder(tmp_path / "s", with_architecture(nnunet_plans(), "light_unet"), seed=2)}
    timing, reused = time_inference(folders, test, tmp_path / "timing.json", rounds=1, cases=1, threads=1)
    assert not reused and timing["mirroring"] is True
    for name in folders:
        entry = timing["models"][name]
        assert entry["seconds_per_case_lean"] > 0 and len(entry["rounds_lean"]) == 1
        assert entry["seconds_per_case"] > 0
    models = [{"name": "teacher", "role": "teacher", "architecture": "nnunet_plain", "dice_mean": 0.5, "params": 10,
               "seconds_per_case": 2.0, "seconds_per_case_lean": 0.5},
              {"name": "student", "role": "student", "architecture": "light_unet", "teachers":
               ["teacher"], "dice_mean": 0.4, "params": 2, "seconds_per_case": 1.0, "seconds_per_case_lean": 0.25}]
    comparison = compare_models(models)[0]
    assert comparison["speedup"] == pytest.approx(2.0) and comparison["speedup_lean"] == pytest.approx(8.0)
    table = comparison_rows({"comparisons": [comparison]}).markdown()
    assert "speed-up lean" in table and "8.00×" in table and "2.00×" in table
    assert "s / case lean" in results_table({"models": models})
