"""The protocol in 3d_fullres, end to end on CPU at a minimal budget: the real 3D demo volumes with a 2D and a
3D teacher fused into one label set, and MSD-layout tasks (single-channel like Task04_Hippocampus, 4D
multi-channel like Task01_BrainTumour) imported with `kt-nnunet data import-msd` and run as users run them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from kt_nnunet.cli import main
from kt_nnunet.data import ShapeConfig, build_demo, write_msd_task
from kt_nnunet.data.synth_domain import DOMAIN_PRESETS
from kt_nnunet.experiment.config import parse_config
from kt_nnunet.experiment.runner import run_experiment

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_BUDGET = {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1}
EVALUATION = {"mirroring": False, "warmup": False, "overlay_cases": 1, "timing_rounds": 1, "timing_cases": 1}


def test_3d_protocol_on_the_3d_demo_with_a_2d_and_a_3d_teacher_fused(nnunet_env, tmp_path):
    """Every mode in 3d_fullres on the MNI152 volumes; the teachers are a `2d` and a `3d_fullres` model planned
    on the same 3D source; they label the transferal volumes into one fused dataset, and 3D students learn."""
    raw = Path(nnunet_env["nnUNet_raw"])
    build_demo(raw, dims=3, with_downstream=True)
    config = {"name": "mni3d", "output": str(tmp_path / "run"), "configuration": "3d_fullres",
              "budget": TINY_BUDGET, "source": 900, "transferal": 901, "test": 902,
              "teachers": [{"architecture": "unet", "tiny": True, "configuration": "2d", "name": "teacher_2d"},
                           {"architecture": "light_unet", "tiny": True, "name": "teacher_3d"}],
              "students": [{"architecture": "light_unet", "tiny": True}],
              "modes": ["single_teacher", "multi_teacher", "kt_finetune", "finetune_only"],
              "finetune": {"dataset": 903, "cases": 2}, "evaluation": EVALUATION}
    results = json.loads(run_experiment(parse_config(config), progress=lambda m: None).read_text())
    models = {m["name"]: m for m in results["models"]}
    assert set(models) == {"teacher_2d", "teacher_3d", "light_unet_from_teacher_2d", "light_unet_from_teacher_3d",
                           "light_unet_multi", "light_unet_multi_ft2", "light_unet_ft2_only"}
    assert models["teacher_2d"]["model_folder"].endswith("__2d")
    assert all(m["model_folder"].endswith("__3d_fullres") for n, m in models.items() if n != "teacher_2d")

    multi = next(r for r in results["labelling"] if len(r["teachers"]) == 2)
    provenance = json.loads(Path(multi["provenance"]).read_text())
    assert sorted(t["configuration"] for t in provenance["teachers"]) == ["2d", "3d_fullres"]
    labelled = Path(multi["provenance"]).parent
    label = next((labelled / "labelsTr").glob("*.nii.gz"))
    import SimpleITK as sitk

    image = sitk.ReadImage(str(label))
    assert image.GetDimension() == 3 and image.GetSize()[2] > 1 and image.GetSpacing() == (2.0, 2.0, 2.0)

    for model in models.values():  # 3D metrics with the true spacing, 3D parameter counts and speed
        assert model["params"] > 0 and model["seconds_per_case"] > 0
        assert model["hd95_mean"] is not None and 0 < model["hd95_mean"] < 2.0 * np.sqrt(76**2 + 47**2 + 6**2)
    assert (tmp_path / "run" / "plots" / "overlays.png").is_file()


def _hippocampus_task(root: Path, number: int, name: str, seed: int, domain="default") -> Path:
    shapes = ShapeConfig(shape=(20, 24, 20), spacing=(1.0, 1.0, 1.0), num_classes=3, radius_mm=5.0)
    return write_msd_task(root / f"Task{number:02d}_{name}", num_train=5, num_test=0, shapes=shapes, seed=seed,
                          modalities=("MRI",), class_names=("Anterior", "Posterior"), prefix="hippocampus",
                          domain=DOMAIN_PRESETS[domain])


def test_msd_hippocampus_cpu_twin_of_the_gpu_example_runs(nnunet_env, tmp_path):
    """examples/msd_hippocampus_cpu.yaml has the GPU example's keys with a CPU budget; on Hippocampus-layout tasks
    imported with `kt-nnunet data import-msd` it runs every mode of the GPU example."""
    gpu = yaml.safe_load((EXAMPLES / "msd_hippocampus_gpu.yaml").read_text())
    cpu = yaml.safe_load((EXAMPLES / "msd_hippocampus_cpu.yaml").read_text())
    assert set(cpu) == set(gpu) and cpu["configuration"] == gpu["configuration"] == "3d_fullres"
    assert [t["architecture"] for t in cpu["teachers"]] == [t["architecture"] for t in gpu["teachers"]]
    assert cpu["modes"] == gpu["modes"] and cpu["device"] == "cpu"

    tasks = tmp_path / "msd"
    runner = CliRunner()
    for number, name, seed, domain in ((40, "HippoSource", 0, "default"), (41, "HippoTransferal", 1, "shifted"),
                                       (42, "HippoTest", 2, "shifted")):
        result = runner.invoke(main, ["data", "import-msd", str(_hippocampus_task(tasks, number, name, seed, domain))])
        assert result.exit_code == 0, result.output
    cpu["output"] = str(tmp_path / "run")
    cpu["evaluation"] = EVALUATION  # 3D mirroring and three timing rounds over 17 models: minutes CI need not spend
    results = json.loads(run_experiment(parse_config(cpu, base_dir=tmp_path), progress=lambda m: None).read_text())
    roles = {m["role"] for m in results["models"]}
    assert roles == {"teacher", "student", "multi_teacher_student", "kt_finetune", "finetune_only"}
    assert len([m for m in results["models"] if m["role"] == "teacher"]) == 3
    assert results["labels"] == {"1": "Anterior", "2": "Posterior"}


def test_msd_brain_tumour_layout_four_channels_in_3d(nnunet_env, tmp_path):
    """A 4D multi-channel MSD task (four MR sequences, like Task01_BrainTumour) is split into nnU-Net's
    per-channel files by import-msd, and a tiny 3D experiment learns from all four channels."""
    shapes = ShapeConfig(shape=(16, 24, 24), spacing=(1.0, 1.0, 1.0), num_classes=4, radius_mm=5.0)
    modalities = ("FLAIR", "T1w", "t1gd", "T2w")
    classes = ("edema", "non-enhancing tumor", "enhancing tumour")
    runner = CliRunner()
    for number, name, seed in ((1, "BrainTumour", 0), (2, "BrainTumourTransferal", 1), (3, "BrainTumourTest", 2)):
        task = write_msd_task(tmp_path / f"Task{number:02d}_{name}", num_train=4, num_test=0, shapes=shapes, seed=seed,
                              modalities=modalities, class_names=classes, prefix="brats")
        result = runner.invoke(main, ["data", "import-msd", str(task), "--dataset-id", str(700 + number)])
        assert result.exit_code == 0, result.output
    source = Path(nnunet_env["nnUNet_raw"]) / "Dataset701_BrainTumour"
    assert json.loads((source / "dataset.json").read_text())["channel_names"] == {str(i): m for i, m in
                                                                               enumerate(modalities)}
    assert len(list((source / "imagesTr").glob("brats_1_000?.nii.gz"))) == 4
    config = {"name": "brats", "output": str(tmp_path / "run"), "configuration": "3d_fullres", "budget": TINY_BUDGET,
              "source": 701, "transferal": 702, "test": 703,
              "teachers": [{"architecture": "unet", "tiny": True}, {"architecture": "light_unet", "tiny": True}],
              "students": [{"architecture": "light_unet", "tiny": True}], "modes": ["multi_teacher"],
              "evaluation": EVALUATION}
    results = json.loads(run_experiment(parse_config(config), progress=lambda m: None).read_text())
    student = next(m for m in results["models"] if m["role"] == "multi_teacher_student")
    assert len(student["cases"][0]["image_files"]) == 4 and set(student["per_class"]) == {"1", "2", "3"}
