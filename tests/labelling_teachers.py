"""Teacher model folders for the labelling tests, made in milliseconds without training.

A folder is what ``nnUNetv2_train`` leaves (plans.json, dataset.json, fold_0/checkpoint_final.pth with
nnU-Net's keys), holding a randomly initialised network. Teachers differ in architecture (kt-nnunet's
tiny U-Net and light U-Net, stock nnU-Net's PlainConvUNet) and in preprocessing (z-score at 1 mm, CT
normalisation with fixed intensity statistics at 2 mm, i.e. a 32x32 grid for 64x64 images).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

LABELS = {"background": 0, "class1": 1, "class2": 2}

PLAIN_UNET = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {"n_stages": 4, "features_per_stage": [4, 8, 16, 16], "conv_op": "torch.nn.modules.conv.Conv2d",
                    "kernel_sizes": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
                    "n_conv_per_stage": [1, 1, 1, 1], "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def nnunet_plans(spacing=(1.0, 1.0), patch=(64, 64), normalization="ZScoreNormalization", num_channels=1,
                 plans_name="nnUNetPlans") -> dict:
    """A 2d nnU-Net plans dict as the default planner writes it for 64x64 images (tiny PlainConvUNet)."""
    intensity = {"max": 1.2, "mean": 0.45, "median": 0.36, "min": 0.1, "percentile_00_5": 0.2,
                 "percentile_99_5": 1.0, "std": 0.23}
    return {
        "dataset_name": "Dataset500_Teacher", "plans_name": plans_name,
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0], "original_median_shape_after_transp": [1, 64, 64],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(intensity) for c in range(num_channels)},
        "configurations": {"2d": {
            "data_identifier": f"{plans_name}_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch), "median_image_size_in_voxels": [64.0 / spacing[0], 64.0 / spacing[1]],
            "spacing": list(spacing), "normalization_schemes": [normalization] * num_channels,
            "use_mask_for_norm": [False] * num_channels,
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": copy.deepcopy(PLAIN_UNET), "batch_dice": True}},
    }


def with_architecture(plans: dict, architecture: str) -> dict:
    """The plans with a kt-nnunet architecture (tiny width), as ``kt-nnunet plan --tiny`` writes them."""
    from kt_nnunet.training.plans import architecture_plans
    from kt_nnunet.registry import get_architecture

    return architecture_plans(plans, "2d", get_architecture(architecture), tiny=True)


def make_model_folder(folder: Path, plans: dict, labels=LABELS, channel_names=None, seed=0,
                      trainer_name="nnUNetTrainer", folds=(0,)) -> Path:
    """Write an nnU-Net model folder holding a randomly initialised (seeded) network."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    num_channels = len(plans["configurations"]["2d"]["normalization_schemes"])
    channel_names = channel_names or {str(c): f"image{c}" for c in range(num_channels)}
    dataset_json = {"channel_names": channel_names, "labels": dict(labels), "numTraining": 6,
                    "file_ending": ".nii.gz"}
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    manager = PlansManager(plans)
    num_outputs = len([k for k in labels if k != "ignore"])
    for fold in folds:
        torch.manual_seed(seed + fold)
        network = nnUNetTrainer.build_network_architecture(manager, manager.get_configuration("2d"), num_channels,
                                                           num_outputs, enable_deep_supervision=False)
        with torch.no_grad():  # livelier logits than the He init's near-constant output
            for parameter in network.parameters():
                if parameter.ndim > 1:
                    parameter.mul_(3.0)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"network_weights": network.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
                    "logging": {"mean_fg_dice": [0.5]}, "_best_ema": np.float32(0.5), "current_epoch": 1,
                    "init_args": {"plans": plans, "configuration": "2d", "fold": fold, "dataset_json": dataset_json,
                                  "device": "cpu"},
                    "trainer_name": trainer_name, "inference_allowed_mirroring_axes": (0, 1)},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def make_teachers(root: Path) -> dict:
    """Three teachers of different architectures and preprocessing, plus a few misfits for error tests."""
    root = Path(root)
    base = nnunet_plans()
    teachers = {
        "unet": make_model_folder(root / "nnUNetTrainer__ktPlans_unet__2d", with_architecture(base, "unet"), seed=1),
        "light": make_model_folder(root / "nnUNetTrainer__ktPlans_light_unet__2d",
                                   with_architecture(base, "light_unet"), seed=2),
        # stock nnU-Net network, CT normalisation with its own statistics, 2 mm grid (32x32 for 64x64 images)
        "ct2mm": make_model_folder(root / "nnUNetTrainer__nnUNetPlans__2d",
                                   nnunet_plans(spacing=(2.0, 2.0), patch=(32, 32),
                                                normalization="CTNormalization"),
                                   channel_names={"0": "CT"}, seed=3),
    }
    teachers["renamed"] = make_model_folder(root / "renamed_labels", base,
                                            labels={"background": 0, "organ": 1, "lesion": 2}, seed=4)
    teachers["two_channel"] = make_model_folder(root / "two_channels", nnunet_plans(num_channels=2), seed=5)
    return teachers


# ---------------------------------------------------------------------------------------- fixtures
# Imported by several test modules; the cache makes every module share one set of folders per session.
import pytest  # noqa: E402

_CACHE: dict = {}


@pytest.fixture(scope="session")
def teachers(tmp_path_factory):
    if "teachers" not in _CACHE:
        _CACHE["teachers"] = make_teachers(tmp_path_factory.mktemp("teachers"))
    return _CACHE["teachers"]


@pytest.fixture(scope="session")
def transferal(tmp_path_factory):
    """An nnU-Net dataset with 4 64x64 cases; its imagesTr are the transferal images."""
    if "transferal" not in _CACHE:
        from kt_nnunet.data import tiny_dataset

        _CACHE["transferal"] = tiny_dataset(790, "Transfer", out=tmp_path_factory.mktemp("raw"), num_train=4,
                                            num_test=0, seed=7)
    return _CACHE["transferal"]


def read_label(path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def labels_of(dataset) -> dict:
    """``{case file name: label array}`` of a dataset's labelsTr."""
    return {p.name: read_label(p) for p in sorted((Path(dataset) / "labelsTr").iterdir())}
