"""``predict``: label a folder of images with a model folder or an exported network, on the lean path.

Preprocessing, sliding window, fold averaging and the mapping back to each image's grid are nnU-Net's
(:mod:`kt_nnunet.nnunet.lean_predictor`), so a model folder's labels equal ``nnUNetv2_predict``'s with the
same settings. Mirroring TTA is off unless asked for: it multiplies the network time by 4 (2D) or 8 (3D).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT, ModelFolderError
from kt_nnunet.nnunet.paths import describe_folder, under_results


@dataclass
class PredictionResult:
    output: Path
    cases: list
    seconds: float        # wall time from the first read to the last write
    backend: str          # "torch", "onnx" or "torchscript"
    tta: bool
    threads: int
    batch_size: int
    per_case: list = field(repr=False, default_factory=list)  # CaseTiming per case

    @property
    def cases_per_second(self) -> float:
        return len(self.cases) / self.seconds if self.seconds > 0 else float("inf")

    @property
    def forward_seconds(self) -> float:
        return sum(t.forward_seconds for t in self.per_case)


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "plans.json").is_file()


def _resolve(model: str | Path) -> Path:
    path = under_results(model)  # as `kt-nnunet label` resolves teachers
    if path.exists():
        return path
    raise ModelFolderError(f"model {model} does not exist (also not under {describe_folder('nnUNet_results')}); "
                           "give a model folder (holding plans.json, dataset.json, fold_N/) or an exported "
                           "NAME.onnx / NAME.pt with its NAME.json")


def load_predictor(model: str | Path, *, folds: Optional[Sequence[int]] = None,
                   checkpoint: str = DEFAULT_CHECKPOINT, tta: bool = False, tile_step_size: float = 0.5,
                   batch_size: Optional[int] = None, threads: Optional[int] = None, device: str = "cpu"):
    """A loaded ``LeanPredictor`` for a model folder or an exported network (``.backend`` names which)."""
    import torch

    from kt_nnunet.devices import usable_cores
    from kt_nnunet.nnunet.lean_predictor import LeanPredictor
    from kt_nnunet.nnunet.model_folder import load_trained_model

    threads = threads or usable_cores()
    torch_device = torch.device(device)
    path = _resolve(model)
    if _is_model_folder(path):
        trained = load_trained_model(path, folds, checkpoint)
        networks, backend = trained.load_fold_networks(torch_device), "torch"
    else:
        from kt_nnunet.exported.model import load_exported_model

        exported = load_exported_model(path, folds, threads, torch_device)
        trained, networks, backend = exported.model, exported.networks, exported.backend
    if trained.configuration_manager.previous_stage_name is not None:
        raise ModelFolderError(f"{path} is a cascade stage ({trained.configuration}); kt-nnunet predict does not "
                               "feed previous-stage segmentations. Use nnUNetv2_predict -prev_stage_predictions")
    predictor = LeanPredictor(trained, networks, use_mirroring=tta, tile_step_size=tile_step_size,
                              batch_size=batch_size, threads=threads, device=torch_device)
    predictor.backend = backend
    return predictor


def predict(model: str | Path, images: str | Path, output: str | Path, *, folds: Optional[Sequence[int]] = None,
            checkpoint: str = DEFAULT_CHECKPOINT, tta: bool = False, tile_step_size: float = 0.5,
            batch_size: Optional[int] = None, threads: Optional[int] = None, device: str = "cpu",
            progress: Optional[Callable[[int, int, str], None]] = None, predictor=None) -> PredictionResult:
    """Write ``output/CASE<file_ending>`` for every case in ``images`` (``CASE_0000<file_ending>``, ...)."""
    from kt_nnunet.nnunet.lean_predictor import list_cases, predict_cases

    if predictor is None:
        predictor = load_predictor(model, folds=folds, checkpoint=checkpoint, tta=tta,
                                            tile_step_size=tile_step_size, batch_size=batch_size, threads=threads,
                                            device=device)
    cases = list_cases(Path(images), predictor.dataset_json["file_ending"], predictor.model.num_input_channels)
    start = time.perf_counter()
    timings = predict_cases(predictor, cases, Path(output), progress)
    seconds = time.perf_counter() - start
    return PredictionResult(Path(output), [t.case for t in timings], seconds, predictor.backend,
                            predictor.use_mirroring, predictor.threads, predictor.batch_size, timings)
