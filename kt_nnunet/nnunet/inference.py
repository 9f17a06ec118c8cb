"""Teacher inference on raw images with nnU-Net's own preprocessing, prediction and export geometry.

One ``TeacherInference`` per trained model folder, or per exported network (its ``TrainedModel`` from the
sidecar, its networks ONNX Runtime or TorchScript callables). ``probabilities(image, properties)`` takes an image as
nnU-Net's reader returns it (``(C, *spatial)`` plus properties) and returns the softmax output in that
image's original geometry, computed exactly as ``nnUNetv2_predict --save_probabilities`` does:

1. ``preprocessor.run_case_npy`` with the teacher's plans: transpose, crop to non-zero, the teacher's
   normalisation and intensity statistics, resampling to the teacher's spacing;
2. ``nnUNetPredictor.predict_logits_from_preprocessed_data``: sliding window, Gaussian weighting, mirroring
   TTA, folds averaged as logits;
3. ``convert_predicted_logits_to_segmentation_with_correct_shape``: resampling back, softmax, crop reverted,
   transpose reverted.

So teachers with different spacings, normalisations or transposes all return maps on the same grid, and
a caller reads each image once and hands the same array to every teacher. Only this module (and the
rest of ``kt_nnunet/nnunet``) imports nnunetv2.
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.model_folder import TrainedModel, make_predictor, predictor_for_network


class TeacherNotSupportedError(KtNnunetError):
    """A model folder nnU-Net can predict with, but whose outputs cannot be fused as class probabilities."""


def reader_writer_class(name: str):
    """nnU-Net's image reader/writer class called ``name`` (as in plans ``image_reader_writer``)."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    return recursive_find_reader_writer_by_name(name)


def default_reader_writer_name(file_ending: str, example_file: str | Path) -> str:
    """The reader nnU-Net picks for a dataset with ``file_ending`` (what planning the output dataset will use)."""
    from kt_nnunet.nnunet.raw_dataset import reader_class

    return reader_class(file_ending, example_file).__name__


def write_segmentation(reader_writer, segmentation: np.ndarray, path: str | Path, properties: dict) -> None:
    """Write a label map with nnU-Net's writer, in the geometry recorded in ``properties`` by its reader."""
    with contextlib.redirect_stdout(io.StringIO()):
        reader_writer().write_seg(segmentation, str(path), properties)


class TeacherInference:
    """A loaded teacher: its predictor, its preprocessor, and timing of the bare network passes."""

    def __init__(self, model: TrainedModel, device: torch.device = torch.device("cpu"), use_mirroring: bool = True,
                 tile_step_size: float = 0.5, networks: Optional[list] = None):
        if model.label_manager.has_regions:
            raise TeacherNotSupportedError(
                f"{model.folder} is trained on regions (dataset.json 'regions_class_order'); its sigmoid outputs "
                "are not class probabilities and cannot be fused into one label map. Use a label-based teacher.")
        if model.configuration_manager.previous_stage_name is not None:
            raise TeacherNotSupportedError(
                f"{model.folder} is a cascade stage ({model.configuration}) that needs the previous stage's "
                "segmentation; use the 3d_fullres or 2d configuration of that dataset as teacher instead.")
        self.model = model
        self.device = device
        self.networks = networks  # exported networks: fold callables instead of state dicts
        with contextlib.redirect_stdout(io.StringIO()):  # "perform_everything_on_device ... cuda" notice
            if networks is None:
                self.predictor = make_predictor(model, device, use_mirroring, tile_step_size)
            else:
                self.predictor = predictor_for_network(
                    networks[0], model.plans_manager, model.configuration_manager, [], model.dataset_json,
                    model.trainer_name, model.mirroring_axes, device=device, use_mirroring=use_mirroring,
                    tile_step_size=tile_step_size)
        self.preprocessor = model.configuration_manager.preprocessor_class(verbose=False)
        self.forward_seconds = 0.0  # time spent in the sliding-window network passes only
        self._weights_loaded = False

    @property
    def reader_writer_name(self) -> str:
        return self.model.plans["image_reader_writer"]

    @property
    def reader_writer(self):
        return self.model.plans_manager.image_reader_writer_class

    @property
    def num_classes(self) -> int:
        return self.model.label_manager.num_segmentation_heads

    def preprocess(self, image: np.ndarray, properties: dict) -> tuple[torch.Tensor, dict]:
        """The teacher's preprocessing of one image (``image`` is not modified; properties are copied)."""
        properties = dict(properties)
        with contextlib.redirect_stdout(io.StringIO()):
            data, _, properties = self.preprocessor.run_case_npy(
                image, None, properties, self.model.plans_manager, self.model.configuration_manager,
                self.model.dataset_json)
        return torch.from_numpy(data), properties

    def predict_logits(self, data: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits on the preprocessed grid (all folds, TTA as configured)."""
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            if self.networks is not None:
                logits = self._predict_exported(data)
            elif len(self.model.state_dicts) == 1:
                logits = self._predict_single_fold(data)
            else:  # nnU-Net loads each fold's weights into the network and averages the logits
                logits = self.predictor.predict_logits_from_preprocessed_data(data).cpu()
        self.forward_seconds += time.perf_counter() - start
        return logits

    @torch.inference_mode()
    def _predict_single_fold(self, data: torch.Tensor) -> torch.Tensor:
        """``predict_logits_from_preprocessed_data`` for one fold, minus its per-call reload of the weights."""
        from nnunetv2.configuration import default_num_processes

        if not self._weights_loaded:
            network = getattr(self.predictor.network, "_orig_mod", self.predictor.network)  # torch.compile'd
            network.load_state_dict(self.model.state_dicts[0])
            self._weights_loaded = True
        threads = torch.get_num_threads()
        torch.set_num_threads(min(default_num_processes, threads))
        try:
            return self.predictor.predict_sliding_window_return_logits(data).to("cpu")
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def _predict_exported(self, data: torch.Tensor) -> torch.Tensor:
        """``predict_logits_from_preprocessed_data`` with one callable per fold instead of one state dict per fold
        (the same summation order and division, so a fold's logits equal its model folder's)."""
        from nnunetv2.configuration import default_num_processes

        threads = torch.get_num_threads()
        torch.set_num_threads(min(default_num_processes, threads))
        try:
            logits = None
            for network in self.networks:
                self.predictor.network = network
                fold_logits = self.predictor.predict_sliding_window_return_logits(data).to("cpu")
                logits = fold_logits if logits is None else logits + fold_logits
            return logits / len(self.networks) if len(self.networks) > 1 else logits
        finally:
            torch.set_num_threads(threads)

    def to_original_geometry(self, logits: torch.Tensor, properties: dict) -> np.ndarray:
        """Softmax probabilities ``(C, *original spatial)`` float32, as nnU-Net exports them."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        _, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.model.plans_manager, self.model.configuration_manager, self.model.label_manager,
            properties, return_probabilities=True, num_threads_torch=torch.get_num_threads())
        return probabilities

    def probabilities(self, image: np.ndarray, properties: dict) -> np.ndarray:
        """``image`` (as the teacher's reader returns it) to class probabilities in its original geometry."""
        data, preprocessed_properties = self.preprocess(image, properties)
        logits = self.predict_logits(data)
        del data
        return self.to_original_geometry(logits, preprocessed_properties)


def load_teacher_inference(model: TrainedModel, device: Optional[torch.device] = None, use_mirroring: bool = True,
                           tile_step_size: float = 0.5) -> TeacherInference:
    return TeacherInference(model, device or torch.device("cpu"), use_mirroring, tile_step_size)


def verify_dataset_integrity(folder: str | Path, num_processes: int = 1) -> None:
    """nnU-Net's own ``verify_dataset_integrity`` (what ``nnUNetv2_plan_and_preprocess`` runs); raises on failure."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity as verify

    with contextlib.redirect_stdout(io.StringIO()):
        verify(str(folder), num_processes=num_processes)
