"""A MONAI network as a teacher (trained in the experiment, then used through its nnU-Net model folder to label the
transferal set) and another as the student, in the smallest kt-nnunet experiment: one teacher, one student,
single_teacher mode, one epoch of two iterations."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """
name: monai_tiny
output: {output}
budget: {{epochs: 1, iterations_per_epoch: 2, val_iterations_per_epoch: 1}}
source: 760
transferal: 761
test: {{dataset: 762, split: test}}
teachers:
  - {{architecture: monai_dynunet, tiny: true}}
students:
  - {{architecture: monai_unetr, tiny: true}}
modes: [single_teacher]
evaluation: {{mirroring: false, warmup: false, overlay_cases: 0, timing_rounds: 1, timing_cases: 1}}
"""


def test_monai_teacher_labels_through_its_model_folder_and_a_monai_student_learns(tmp_path, monkeypatch):
    from kt_nnunet import run_experiment
    from kt_nnunet.data import DOMAIN_PRESETS, ShapeConfig, synth_dataset, tiny_dataset

    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / variable).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / variable))
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    shapes, shifted = ShapeConfig(shape=(64, 64), num_classes=3), DOMAIN_PRESETS["shifted"]
    tiny_dataset(760, "MonaiSrc", num_train=5, num_test=0)
    synth_dataset(761, "MonaiTrf", num_train=5, num_test=0, shapes=shapes, domain=shifted, labelled=False, seed=1)
    synth_dataset(762, "MonaiTst", num_train=1, num_test=2, shapes=shapes, domain=shifted, seed=2)
    config = tmp_path / "experiment.yaml"
    config.write_text(CONFIG.format(output=tmp_path / "run"))

    results = json.loads(Path(run_experiment(config, progress=lambda message: None)).read_text())

    models = {m["name"]: m for m in results["models"]}
    assert {m["role"] for m in models.values()} == {"teacher", "student"}
    teacher = next(m for m in models.values() if m["role"] == "teacher")
    student = next(m for m in models.values() if m["role"] == "student")
    assert teacher["architecture"] == "monai_dynunet" and student["architecture"] == "monai_unetr"
    # The teacher was used as nnU-Net uses a trained model: its model folder, with the MONAI class in its plans.
    plans = json.loads((Path(teacher["model_folder"]) / "plans.json").read_text())
    network = next(iter(plans["configurations"].values()))["architecture"]["network_class_name"]
    assert network == "kt_nnunet_monai.networks.MonaiDynUNet"
    labelling = results["labelling"]
    assert len(labelling) == 1 and len(labelling[0]["teachers"]) == 1
    provenance = json.loads(Path(labelling[0]["provenance"]).read_text())
    assert Path(provenance["teachers"][0]["model_folder"]) == Path(teacher["model_folder"])
    assert len(list((Path(labelling[0]["provenance"]).parent / "labelsTr").glob("*.nii.gz"))) == 5
    student_plans = json.loads((Path(student["model_folder"]) / "plans.json").read_text())
    assert next(iter(student_plans["configurations"].values()))["architecture"]["network_class_name"] == \
        "kt_nnunet_monai.networks.MonaiUNETR"
    for model in models.values():
        assert 0.0 <= model["dice_mean"] <= 1.0 and model["params"] > 0
