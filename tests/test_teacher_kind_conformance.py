"""Every built-in teacher kind passes the teacher-kind conformance kit (``kt_nnunet.testing``), the checks plugin
packages run on their own kinds; the last tests show that the kit catches a kind that breaks each rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fake_plugins import FLAWED_KINDS_PLUGIN, THRESHOLD_KIND_PLUGIN
from labelling_teachers import LABELS, make_model_folder, nnunet_plans

from kt_nnunet.testing import TeacherKindConformance, TeacherKindConformanceError
from kt_nnunet.testing.kind_checks import CASE, IMAGE_SHAPE, check_teacher_kind

MODEL_FOLDER = "nnUNetTrainer__nnUNetPlans__2d"


@pytest.fixture(scope="module")
def exported_networks(tmp_path_factory):
    """A tiny model folder exported once to each format: ``{format: network file}`` (its sidecar beside it)."""
    from kt_nnunet.deploy.export import export_model

    root = tmp_path_factory.mktemp("exported_kinds")
    folder = make_model_folder(root / MODEL_FOLDER, nnunet_plans())
    return {fmt: export_model(folder, root / fmt / f"net{suffix}", format=fmt).networks[0]
            for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt"))}


class TestModelFolderKind(TeacherKindConformance):
    kind = "nnunet"

    def make_sample(self, folder):
        return make_model_folder(folder / MODEL_FOLDER, nnunet_plans(), seed=0)

    def modify(self, sample):
        make_model_folder(sample, nnunet_plans(), seed=1)  # other weights: another checkpoint file


class TestPredictionsKind(TeacherKindConformance):
    kind = "predictions"

    def make_sample(self, folder):
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps({"labels": LABELS}))
        logits = np.random.default_rng(0).normal(size=(len(LABELS), *IMAGE_SHAPE))
        probabilities = np.exp(logits) / np.exp(logits).sum(0)
        np.savez(folder / f"{CASE}.npz", probabilities=probabilities.astype(np.float32))
        return folder


class _ExportedKind(TeacherKindConformance):
    @pytest.fixture(autouse=True)
    def _exported_sample(self, exported_networks):
        self.sample = exported_networks[self.kind]  # the kit's own make_sample copies it with its sidecar

    def modify(self, sample):
        with open(sample.with_suffix(".json"), "a") as sidecar:  # the network file itself is binary
            sidecar.write("\n")


class TestOnnxKind(_ExportedKind):
    kind = "onnx"


class TestTorchScriptKind(_ExportedKind):
    kind = "torchscript"


@pytest.fixture
def threshold_sample(fake_entry_points, tmp_path):
    """A rules file for a kind of the threshold plugins (the greedy kind claims its own suffix)."""
    fake_entry_points("thresholds", source=THRESHOLD_KIND_PLUGIN)
    fake_entry_points("flawed", source=FLAWED_KINDS_PLUGIN)

    def write(kind):
        sample = tmp_path / ("rules.greedy" if kind == "threshold_greedy" else "rules.threshold.json")
        sample.write_text(json.dumps({"labels": LABELS, "thresholds": [0.4, 0.6]}))
        return sample

    return write


def test_a_correct_plugin_kind_passes(threshold_sample, tmp_path):
    check_teacher_kind("threshold", threshold_sample("threshold"), tmp_path / "work")


@pytest.mark.parametrize(("kind", "rule"), [
    ("threshold_gap", r"labels \{'background': 0, 'class2': 2\} must be background 0, then 1, 2, \.\.\. without gaps"),
    ("threshold_grid", r"probabilities\(\) has shape \[3, 1, 32, 32\], the image asks for \[3, 1, 16, 16\]"),
    ("threshold_sum", r"must lie in \[0, 1\] and sum to one over the classes"),
    ("threshold_no_checksum", r"fingerprint\(\) is unchanged after the teacher's files changed"),
    ("threshold_greedy", r"claims\(\) is True for the unrelated .*notes\.txt"),
])
def test_the_kit_names_the_kind_its_plugin_and_the_broken_rule(threshold_sample, tmp_path, kind, rule):
    with pytest.raises(TeacherKindConformanceError, match=rule) as info:
        check_teacher_kind(kind, threshold_sample(kind), tmp_path / "work")
    assert str(info.value).startswith(f"teacher kind '{kind}' from plugin 'flawed' (kt-nnunet-flawed 1.0): ")


def test_the_kit_refuses_a_kind_that_is_not_registered(threshold_sample, tmp_path):
    with pytest.raises(TeacherKindConformanceError, match=r"unknown teacher kind 'treshold' \(did you mean "
                                                          r"'threshold'\?\).*does its register_teacher_kinds hook"):
        check_teacher_kind("treshold", threshold_sample("threshold"), tmp_path / "work")
