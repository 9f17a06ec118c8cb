"""Transfer-trainer building blocks without training: soft loss, fusion, deep-supervision targets, checks."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from kt_nnunet.teachers.fusion import make_fusion
from kt_nnunet.training.losses import SoftTargetLoss, pack_targets, soft_target_kl
from kt_nnunet.teachers.compatibility import check_online_teachers as check_teachers
from kt_nnunet.teachers.errors import TeacherMismatchError, TeacherSettingsError
from kt_nnunet.teachers.fusion import fuse_probabilities
from kt_nnunet.training.online_settings import OnlineSettings
from kt_nnunet.training.targets import downsample_labels, downsample_probabilities

PLANS = json.loads((Path(__file__).parent / "data" / "nnUNetPlans_2d_48px.json").read_text())
DATASET_JSON = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 4,
                "file_ending": ".nii.gz"}


def test_soft_loss_on_a_hand_computed_example():
    # One voxel, two classes, T = 2. Student logits (1, 0) -> p_s = softmax(0.5, 0) = (0.622459, 0.377541);
    # teacher p_t = (0.5, 0.5). KL = 0.5 ln(0.5/0.622459) + 0.5 ln(0.5/0.377541) = 0.030930; x T^2 = 0.123719.
    student = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    teacher = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    assert soft_target_kl(student, teacher, 2.0).item() == pytest.approx(0.123719, abs=1e-5)
    # Identical distributions: zero.
    same = torch.softmax(student / 2.0, 1)
    assert soft_target_kl(student, same, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_offline_soft_targets_tempered_and_their_loss_by_hand():
    """Saved probability (0.8, 0.2), T = 2: p^(1/2) normalised = (0.894427, 0.447214) / 1.341641 = (2/3, 1/3).

    With student logits (0, 0): p_s^T = (1/2, 1/2); KL = 2/3 ln(4/3) + 1/3 ln(2/3) = 0.056633; x T^2 = 0.226532.
    With alpha = 1 the loss is that soft term alone.
    """
    from kt_nnunet.training.offline_soft import temper

    saved = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1)
    tempered = temper(saved, 2.0)
    torch.testing.assert_close(tempered.flatten(), torch.tensor([2 / 3, 1 / 3]))
    torch.testing.assert_close(temper(saved, 1.0), saved)   # T = 1 keeps the probabilities
    assert temper(torch.zeros(1, 2, 1, 1), 2.0).abs().sum() == 0  # padding outside the image: no soft target
    student = torch.zeros(1, 2, 1, 1)
    loss = SoftTargetLoss(lambda output, target: torch.tensor(99.0), temperature=2.0, alpha=1.0)
    assert loss(student, pack_targets(torch.zeros(1, 1, 1, 1), tempered)).item() == pytest.approx(0.226532, abs=1e-5)


def test_soft_loss_mixes_hard_and_soft_terms_and_skips_ignored_voxels():
    class ConstantHard(torch.nn.Module):
        def forward(self, output, target):
            assert target.shape[1] == 1
            return torch.tensor(10.0)

    student = torch.tensor([[1.0, 0.0], [0.0, 3.0]]).t().reshape(1, 2, 1, 2)   # two voxels
    teacher = torch.tensor([[0.5, 0.5], [0.9, 0.1]]).t().reshape(1, 2, 1, 2)
    labels = torch.tensor([0.0, 3.0]).view(1, 1, 1, 2)                          # voxel 2 = ignore label 3
    loss = SoftTargetLoss(ConstantHard(), temperature=2.0, alpha=0.25, ignore_label=3)
    expected_kl = soft_target_kl(student[..., :1], teacher[..., :1], 2.0).item()  # voxel 1 only
    assert loss(student, pack_targets(labels, teacher)).item() == pytest.approx(0.75 * 10 + 0.25 * expected_kl)
    assert loss(student, labels).item() == 10.0          # plain label targets (validation): Dice+CE alone


def test_ignored_voxels_get_no_gradient_from_the_soft_loss():
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    hard = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, ignore_label=3,
                          dice_class=MemoryEfficientSoftDiceLoss)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 8, 8)).float()
    labels[:, :, :4] = 3
    teacher = torch.softmax(torch.randn(2, 3, 8, 8), 1)
    SoftTargetLoss(hard, 2.0, 0.5, ignore_label=3)(logits, pack_targets(labels, teacher)).backward()
    assert logits.grad[:, :, :4].abs().max() == 0
    assert logits.grad[:, :, 4:].abs().max() > 0


@pytest.mark.parametrize("method", ["mean", "weighted", "majority", "staple"])
def test_batched_fusion_matches_the_labelling_fusion(method):
    torch.manual_seed(0)
    probabilities = [torch.softmax(torch.randn(2, 3, 6, 5) * 2, 1) for _ in range(3)]
    weights = [0.2, 0.3, 0.5] if method == "weighted" else None
    labels = fuse_probabilities(probabilities, method, weights, min_confidence=0.5, ignore_label=3)
    assert labels.shape == (2, 1, 6, 5)
    for case in range(2):
        fusion = make_fusion(method, 3, weights, min_confidence=0.5, ignore_label=3)
        for p in probabilities:
            fusion.add(p[case])
        assert torch.equal(labels[case, 0], fusion.result().labels)
    if method != "staple":  # STAPLE's posteriors are confident here
        assert (labels == 3).any()  # some voxels below the confidence threshold


def test_deep_supervision_targets_match_nnunets_transform():
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    labels = torch.randint(0, 4, (2, 1, 48, 40), dtype=torch.int16)
    scales = [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25], [0.125, 0.125]]
    transform = DownsampleSegForDSTransform(scales)
    reference = [torch.stack(per_case) for per_case in
                 zip(*[transform(segmentation=labels[b])["segmentation"] for b in range(2)])]
    ours = downsample_labels(labels.long(), [r.shape[2:] for r in reference], torch.int16)
    assert [o.shape for o in ours] == [(2, 1, 48, 40), (2, 1, 24, 20), (2, 1, 12, 10), (2, 1, 6, 5)]
    for a, b in zip(ours, reference):
        assert a.dtype == b.dtype and torch.equal(a, b)
    probabilities = torch.softmax(torch.randn(2, 3, 48, 40), 1)
    for p, r in zip(downsample_probabilities(probabilities, [r.shape[2:] for r in reference]), reference):
        assert p.shape[2:] == r.shape[2:]
        torch.testing.assert_close(p.sum(1), torch.ones_like(p[:, 0]))


def test_online_settings_are_validated():
    configuration = {"kt_online": {"teachers": ["/t"], "fusion": "weighted", "weights": [1.0]}}
    settings = OnlineSettings.from_configuration(configuration)
    assert settings.teachers[0].folder == Path("/t") and settings.normalized_weights() == [1.0]
    with pytest.raises(TeacherSettingsError, match="unknown fields \\['tempreature'\\]"):
        OnlineSettings.from_configuration({"kt_online": {"teachers": ["/t"], "tempreature": 3}})
    with pytest.raises(TeacherSettingsError, match="fusion 'weighted' needs one weight per teacher"):
        OnlineSettings.from_configuration({"kt_online": {"teachers": ["/t"], "fusion": "weighted"}})
    with pytest.raises(TeacherSettingsError, match="no 'kt_online' key"):
        OnlineSettings.from_configuration({}, "2d")
    with pytest.raises(TeacherSettingsError, match="alpha in \\[0, 1\\]"):
        OnlineSettings.from_configuration({"kt_online": {"teachers": ["/t"], "alpha": 2}})


def fake_teacher(plans=PLANS, dataset_json=DATASET_JSON):
    from kt_nnunet.nnunet.model_folder import TrainedModel

    return TrainedModel(Path("/teachers/T1"), plans, dataset_json, "2d", (0,), "checkpoint_final.pth",
                        "nnUNetTrainer", (0, 1), [])


@pytest.mark.parametrize("change, message", [
    (lambda p: p["configurations"]["2d"].update(spacing=[0.5, 0.5]), "spacing \\[1.0, 1.0\\] \\(student\\) vs \\[0.5"),
    (lambda p: p["configurations"]["2d"].update(normalization_schemes=["CTNormalization"]), "normalization"),
    (lambda p: p.update(transpose_forward=[1, 0]), "axis order"),
])
def test_online_teachers_with_other_preprocessing_are_refused(change, message):
    teacher_plans = copy.deepcopy(PLANS)
    change(teacher_plans)
    with pytest.raises(TeacherMismatchError, match=message) as info:
        check_teachers(PLANS, PLANS["configurations"]["2d"], DATASET_JSON, [fake_teacher(teacher_plans)])
    assert "offline mode" in str(info.value) and "/teachers/T1" in str(info.value)
    check_teachers(PLANS, PLANS["configurations"]["2d"], DATASET_JSON, [fake_teacher()])  # identical: accepted


def test_ct_statistics_must_match_for_online_teachers():
    ct = copy.deepcopy(PLANS)
    ct["configurations"]["2d"]["normalization_schemes"] = ["CTNormalization"]
    other = copy.deepcopy(ct)
    other["foreground_intensity_properties_per_channel"]["0"]["mean"] = 40.0
    with pytest.raises(TeacherMismatchError, match="CTNormalization intensity statistics of channel 0 differ"):
        check_teachers(ct, ct["configurations"]["2d"], DATASET_JSON, [fake_teacher(other)])
    zscore = copy.deepcopy(PLANS)  # per-image z-score: dataset statistics do not matter
    zscore["foreground_intensity_properties_per_channel"]["0"]["mean"] = 40.0
    check_teachers(PLANS, PLANS["configurations"]["2d"], DATASET_JSON, [fake_teacher(zscore)])


def test_label_and_channel_mismatch_is_one_clear_error():
    teacher_json = dict(DATASET_JSON, labels={"background": 0, "a": 1}, channel_names={"0": "T1", "1": "T2"})
    with pytest.raises(TeacherMismatchError) as info:
        check_teachers(PLANS, PLANS["configurations"]["2d"], dict(DATASET_JSON, labels={**DATASET_JSON["labels"],
                                                                                        "ignore": 3}),
                       [fake_teacher(dataset_json=teacher_json)])
    text = str(info.value)
    assert "labels differ" in text and "input channels differ: student dataset 1, teacher 2" in text
    assert "ignore" not in text.split("labels differ")[1].split(";")[0]  # the ignore label is not a class


def test_checkpoints_name_a_stock_trainer_unless_the_network_builder_changes():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from kt_nnunet.training.base import stock_trainer_name
    from kt_nnunet.training.offline import nnUNetTrainerKTOffline
    from kt_nnunet.training.online import nnUNetTrainerKTOnlineSoft

    class CustomNetworkTrainer(nnUNetTrainerKTOffline):
        @staticmethod
        def build_network_architecture(*args, **kwargs):
            return nnUNetTrainer.build_network_architecture(*args, **kwargs)

    assert stock_trainer_name(nnUNetTrainerKTOffline) == "nnUNetTrainer"
    assert stock_trainer_name(nnUNetTrainerKTOnlineSoft) == "nnUNetTrainer"
    assert stock_trainer_name(CustomNetworkTrainer) == "CustomNetworkTrainer"


def test_pretrained_weights_are_loaded_safely_and_must_fit(tmp_path):
    from kt_nnunet.nnunet.model_folder import ModelFolderError
    from kt_nnunet.nnunet.training_api import TrainingError, load_pretrained_weights_safely

    source, target = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": source.state_dict()}, path)
    assert load_pretrained_weights_safely(target, path, skip=()) == 2
    assert torch.equal(target[0].weight, source[0].weight)
    wider = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3))
    with pytest.raises(TrainingError, match="do not fit this network.*0.weight \\(4, 1, 3, 3\\) vs \\(8, 1, 3, 3\\)"):
        load_pretrained_weights_safely(wider, path, skip=())

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"network_weights": source.state_dict(), "x": Payload()}, path)
    with pytest.raises(ModelFolderError, match="refused to load"):
        load_pretrained_weights_safely(target, path, skip=())
