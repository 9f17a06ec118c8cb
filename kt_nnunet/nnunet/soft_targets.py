"""Teacher probabilities on nnU-Net's preprocessed grid, and a dataset class that serves them with each case.

``kt-nnunet label --save-probabilities`` writes each case's fused probabilities in the image's own
geometry (``probabilitiesTr/<case>.npz``). Offline soft-target training needs them on the grid the student
trains on, so :func:`preprocess_soft_targets` repeats what nnU-Net's ``DefaultPreprocessor.run_case_npy``
does to an image (transpose, crop to the stored bounding box, resample with the plans' data resampling
function to the preprocessed shape), without the intensity normalisation, and writes
``<data_identifier>_kt_soft/<case>.npy`` (float16) beside the preprocessed data.

:class:`SoftTargetDataset` is nnU-Net's blosc2 dataset whose ``load_case`` appends those probabilities to
the image as extra channels, so nnU-Net's data loader crops them with the image and its spatial
augmentation moves them with it (bilinear, as probabilities should be interpolated).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from kt_nnunet.errors import KtNnunetError

SOFT_SUFFIX = "_kt_soft"


class SoftTargetError(KtNnunetError):
    """The teacher probabilities do not fit the labelled dataset."""


def soft_folder_of(data_folder: str | Path) -> Path:
    data_folder = Path(data_folder)
    return data_folder.with_name(data_folder.name + SOFT_SUFFIX)


def preprocess_soft_targets(dataset_name: str, plans: dict, configuration: str, probabilities: str | Path) -> Path:
    """Bring every case's ``probabilities/<case>.npz`` onto the preprocessed grid; returns the output folder.

    Cases already converted (same shape) are kept, so a rerun costs nothing.
    """
    import blosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kt_nnunet.nnunet.paths import preprocessed_folder

    plans_manager = PlansManager(plans)
    manager = plans_manager.get_configuration(configuration)
    data_folder = preprocessed_folder() / dataset_name / manager.data_identifier
    out = soft_folder_of(data_folder)
    out.mkdir(exist_ok=True)
    probabilities = Path(probabilities)
    axes = [0, *[i + 1 for i in plans_manager.transpose_forward]]
    for properties_file in sorted(data_folder.glob("*.pkl")):
        case = properties_file.stem
        source = probabilities / f"{case}.npz"
        if not source.is_file():
            raise SoftTargetError(f"{source} is missing: every case of {dataset_name} needs the teachers' "
                                  "probabilities; label the transferal set with `kt-nnunet label "
                                  "--save-probabilities` (or `transfer: {soft: true}` in an experiment)")
        shape = tuple(blosc2.open(urlpath=str(data_folder / f"{case}.b2nd"), mode="r").shape[1:])
        target = out / f"{case}.npy"
        if target.is_file() and tuple(np.load(target, mmap_mode="r").shape[1:]) == shape:
            continue
        properties = pickle.loads(properties_file.read_bytes())
        soft = np.load(source)["probabilities"].astype(np.float32).transpose(axes)
        if tuple(soft.shape[1:]) != tuple(properties["shape_before_cropping"]):
            raise SoftTargetError(f"{source}: probabilities of shape {soft.shape[1:]} for an image of shape "
                                  f"{tuple(properties['shape_before_cropping'])}; they belong to another image")
        soft = soft[(slice(None), *[slice(low, high) for low, high in properties["bbox_used_for_cropping"]])]
        spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
        target_spacing = list(manager.spacing)
        if len(target_spacing) < len(spacing):
            target_spacing = [spacing[0]] + target_spacing
        if tuple(soft.shape[1:]) != shape:
            soft = manager.resampling_fn_data(soft, shape, spacing, target_spacing)
        soft = np.clip(soft, 0.0, None)
        soft /= np.maximum(soft.sum(0, keepdims=True), 1e-6)
        tmp = target.with_name(f".{target.stem}.tmp.npy")
        np.save(tmp, soft.astype(np.float16))
        tmp.replace(target)
    return out


class SoftTargetDataset(nnUNetDatasetBlosc2):
    """nnU-Net's dataset with the teacher probabilities appended to each case's image channels."""

    def load_case(self, identifier):
        data, seg, seg_previous, properties = super().load_case(identifier)
        soft = np.load(soft_folder_of(self.source_folder) / f"{identifier}.npy")
        return np.concatenate([np.asarray(data, dtype=np.float32), soft.astype(np.float32)]), seg, seg_previous, \
            properties


def restrict_to_image_channels(transforms, channels: int):
    """nnU-Net's training transforms (a ``ComposeTransforms``) with every transform that changes intensities
    applied to the first ``channels`` image channels only, so the probabilities riding along as further channels
    move with the image (spatial, mirroring) but are never noised, blurred or rescaled."""
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
    from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

    # Transforms that move pixels (the probabilities must move with the image) or touch the segmentation only.
    shared = (SpatialTransform, MirrorTransform, Convert2DTo3DTransform, Convert3DTo2DTransform, RemoveLabelTansform,
              DownsampleSegForDSTransform, ConvertSegmentationToRegionsTransform)
    transforms.transforms = [t if isinstance(t, shared) else ImageChannelsOnly(t, channels)
                             for t in transforms.transforms]
    return transforms


class ImageChannelsOnly(BasicTransform):
    """Apply ``transform`` to the first ``channels`` image channels; the others pass through untouched."""

    def __init__(self, transform: BasicTransform, channels: int):
        super().__init__()
        self.transform, self.channels = transform, channels

    def __call__(self, **data_dict) -> dict:
        image = data_dict["image"]
        result = self.transform(**dict(data_dict, image=image[:self.channels]))
        result["image"] = torch.cat([result["image"], image[self.channels:]])
        return result
