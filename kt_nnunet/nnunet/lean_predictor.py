"""Deployment inference: nnU-Net's predictor with the per-case overhead taken out, same labels.

``nnUNetv2_predict`` reloads each fold's weights on every case, feeds the sliding window one patch at a
time, caps torch at ``nnUNet_def_n_proc`` threads (on a CPU it first asks for ``cpu_count()``, which ignores
affinity and container limits) and, with ``-npp/-nps > 0``, spawns worker processes that each import torch
again. ``LeanPredictor`` keeps nnU-Net's preprocessing, Gaussian-weighted sliding window, mirroring,
fold averaging, resampling back and writer, and changes only that:

* the fold networks are built once and stay loaded (no ``load_state_dict`` per case);
* patches go through the network in batches (``batch_size``); each patch's logits are added to the
  float16 accumulator in nnU-Net's order, so the accumulated logits equal nnU-Net's;
* torch runs on the cores this process may use (``kt_nnunet.devices.compute_threads``), uncapped;
* :func:`predict_cases` reads and preprocesses case k+1 in a thread while case k is predicted, and
  resamples and writes case k in another thread; threads, not processes, so nothing is pickled or spawned.

The networks are callables ``(B, C, *patch) -> (B, K, *patch)`` (torch modules, or an ONNX Runtime /
TorchScript wrapper from :mod:`kt_nnunet.exported.runtime`), so every back end shares this code.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.evaluation import torch_threads
from kt_nnunet.nnunet.evaluation import write_segmentation as write_segmentation_atomically
from kt_nnunet.nnunet.model_folder import TrainedModel

# Patches per batch aim at this many voxels: enough to amortise per-call overhead for small 2D patches,
# while a 3D or a 512x512 patch stays alone (batching large patches gains nothing on a CPU, costs memory).
BATCH_VOXELS = 2 ** 17
MAX_BATCH = 16


class PredictionInputError(KtNnunetError):
    """The images to predict do not fit the model (channels, file ending) or are missing."""


def default_batch_size(patch_size: Sequence[int]) -> int:
    return int(max(1, min(MAX_BATCH, BATCH_VOXELS // math.prod(patch_size))))


class LeanPredictor(nnUNetPredictor):
    """An ``nnUNetPredictor`` over already built fold networks; batched sliding window, no per-case reload."""

    def __init__(self, model: TrainedModel, networks: Sequence[Callable], *, use_mirroring: bool = False,
                 tile_step_size: float = 0.5, batch_size: Optional[int] = None, threads: Optional[int] = None,
                 device: torch.device = torch.device("cpu")):
        with contextlib.redirect_stdout(io.StringIO()):  # "perform_everything_on_device ... cuda" notice
            super().__init__(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                             perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                             verbose_preprocessing=False, allow_tqdm=False)
        self.manual_initialization(networks[0], model.plans_manager, model.configuration_manager, None,
                                   model.dataset_json, model.trainer_name, model.mirroring_axes)
        self.model = model
        self.fold_networks = list(networks)
        self.batch_size = batch_size or default_batch_size(model.configuration_manager.patch_size)
        from kt_nnunet.devices import compute_threads

        self.threads = threads or compute_threads()
        self.forward_seconds = 0.0  # inside the network calls only
        self.backend = "torch"

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """nnU-Net's fold loop (sum of each fold's sliding-window logits, then the mean), minus the reloads."""
        prediction = None
        with torch_threads(self.threads):
            for network in self.fold_networks:
                self.network = network
                logits = self.predict_sliding_window_return_logits(data).to("cpu")
                prediction = logits if prediction is None else prediction.add_(logits)
        if len(self.fold_networks) > 1:
            prediction /= len(self.fold_networks)
        return prediction

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self._internal_maybe_mirror_and_predict(batch)
        finally:
            self.forward_seconds += time.perf_counter() - start

    @torch.inference_mode()
    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers, do_on_device: bool = True):
        """nnU-Net's accumulation (float16 sums, Gaussian weights, patch order), with patches batched."""
        results_device = self.device if do_on_device else torch.device("cpu")
        data = data.to(results_device)
        logits = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.half,
                             device=results_device)
        counts = torch.zeros(data.shape[1:], dtype=torch.half, device=results_device)
        gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                    value_scaling_factor=10, device=results_device) if self.use_gaussian else 1
        for start in range(0, len(slicers), self.batch_size):
            chunk = slicers[start:start + self.batch_size]
            batch = torch.stack([data[s] for s in chunk]).to(self.device, memory_format=torch.contiguous_format)
            predictions = self._forward(batch).to(results_device)
            for prediction, slicer in zip(predictions, chunk):
                if self.use_gaussian:
                    prediction *= gaussian
                logits[slicer] += prediction
                counts[slicer[1:]] += gaussian
        torch.div(logits, counts, out=logits)
        if torch.any(torch.isinf(logits)):
            raise RuntimeError("inf in the accumulated logits (float16 overflow); the network's logits are too "
                               "large for nnU-Net's accumulator")
        return logits


def list_cases(images: Path, file_ending: str, num_channels: int) -> list[tuple[str, list[str]]]:
    """``[(case id, channel files)]`` of an image folder, grouped as ``nnUNetv2_predict -i`` groups them."""
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    images = Path(images)
    if not images.is_dir():
        raise PredictionInputError(f"image folder {images} does not exist")
    groups = create_lists_from_splitted_dataset_folder(str(images), file_ending)
    if not groups:
        raise PredictionInputError(f"{images} holds no images named CASE_0000{file_ending}; nnU-Net expects one "
                                   f"file per channel, CASE_XXXX{file_ending}, with the model's file ending")
    cases = []
    for files in groups:
        case = os.path.basename(files[0])[: -(len(file_ending) + 5)]
        if len(files) != num_channels:
            raise PredictionInputError(f"case {case!r} in {images} has {len(files)} channel file(s) but the model "
                                       f"takes {num_channels} (CASE_0000{file_ending} ... "
                                       f"CASE_{num_channels - 1:04d}{file_ending}); add or remove channel files")
        cases.append((case, files))
    return cases


@dataclass
class CaseTiming:
    case: str
    seconds: float        # from this case's preprocessed data being ready to its prediction being handed off
    forward_seconds: float


def _preprocessed(predictor: LeanPredictor, cases, out: queue.Queue, stop: threading.Event) -> None:
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    try:
        for case, files in cases:
            if stop.is_set():
                return
            # no redirect_stdout here: it swaps the process-wide sys.stdout, which other threads print to
            data, _, properties = preprocessor.run_case(files, None, predictor.plans_manager,
                                                        predictor.configuration_manager, predictor.dataset_json)
            out.put((case, torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format),
                     properties))
        out.put(None)
    except BaseException as exc:  # handed to the main thread, which raises it
        out.put(exc)


def _export(predictor: LeanPredictor, logits: torch.Tensor, properties: dict, path: Path) -> Path:
    segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties,
        return_probabilities=False, num_threads_torch=1)  # the network threads keep the cores
    return write_segmentation_atomically(predictor, segmentation, properties, path)


def predict_cases(predictor: LeanPredictor, cases: Sequence[tuple[str, list[str]]], output: Path,
                  progress: Optional[Callable[[int, int, str], None]] = None) -> list[CaseTiming]:
    """Predict ``cases`` into ``output/CASE<file_ending>``; reading, predicting and writing overlap."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    ending = predictor.dataset_json["file_ending"]
    ready: queue.Queue = queue.Queue(maxsize=1)  # one case preprocessed ahead, as nnU-Net's iterator
    stop = threading.Event()
    reader = threading.Thread(target=_preprocessed, args=(predictor, list(cases), ready, stop), daemon=True)
    reader.start()
    timings, pending = [], None
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            while True:
                item = ready.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                case, data, properties = item
                start, forward_before = time.perf_counter(), predictor.forward_seconds
                logits = predictor.predict_logits_from_preprocessed_data(data)
                del data
                if pending is not None:  # at most one case waits for writing: memory stays bounded
                    pending.result()
                pending = writer.submit(_export, predictor, logits, properties, output / f"{case}{ending}")
                timings.append(CaseTiming(case, time.perf_counter() - start,
                                          predictor.forward_seconds - forward_before))
                if progress is not None:
                    progress(len(timings), len(cases), case)
            if pending is not None:
                pending.result()
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            ready.get_nowait()  # unblock a reader waiting to put
        reader.join(timeout=10)
    return timings


def predict_case(predictor: LeanPredictor, files: Sequence[str | Path]):
    """``(segmentation, properties, seconds)`` for one case on the lean path, what
    :func:`kt_nnunet.nnunet.evaluation.predict_case` measures on nnU-Net's (read, preprocess, network, resample)."""
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        data, _, properties = preprocessor.run_case([str(f) for f in files], None, predictor.plans_manager,
                                                    predictor.configuration_manager, predictor.dataset_json)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data))
    segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties,
        return_probabilities=False, num_threads_torch=predictor.threads)
    return segmentation, properties, time.perf_counter() - start
