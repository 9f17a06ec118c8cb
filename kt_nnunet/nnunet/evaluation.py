"""Predicting a labelled test set with a trained model folder, and nnU-Net's own per-case metrics.

The nnU-Net-touching half of kt-nnunet's evaluation (the package ``kt_nnunet.evaluation`` is the other):

* :func:`load_test_set` pairs ``imagesTs``/``labelsTs`` (or ``imagesTr``/``labelsTr``) of a raw dataset;
* :func:`predict_case` runs one case through an ``nnUNetPredictor`` built by
  :func:`kt_nnunet.nnunet.model_folder.make_predictor` (safe loading, no trainer lookup), in this
  process (no spawn pools: they cost seconds per call on a few CPU cores and need ``__main__`` guards),
  and returns the segmentation plus the seconds spent (preprocessing + network + resampling back);
* :func:`case_metrics` scores one prediction file with nnU-Net's ``compute_metrics`` (the function
  ``nnUNetv2_evaluate_folder`` maps over cases), reading each file once, and also hands back the two
  label arrays and the voxel spacing so that callers can add distance metrics;
* :func:`summarize_cases` aggregates per-case metrics exactly as ``compute_metrics_on_folder`` does
  (``nanmean`` per label, then the mean over foreground labels) and :func:`write_summary_json` writes
  nnU-Net's ``summary.json`` format.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.raw_dataset import (
    MissingChannelError,
    MissingLabelError,
    load_dataset_json,
    split_channel,
    visible_files,
)

SPLITS = {"test": ("imagesTs", "labelsTs"), "train": ("imagesTr", "labelsTr")}


class EvaluationError(KtNnunetError):
    """A model cannot be evaluated on a test set as asked (missing split, label mismatch, ...)."""


@dataclass(frozen=True)
class TestCase:
    case: str
    images: tuple[Path, ...]
    reference: Path


@dataclass(frozen=True)
class TestSet:
    """The labelled cases of one split of an nnU-Net raw dataset."""

    folder: Path
    split: str  # "test" (imagesTs/labelsTs) or "train" (imagesTr/labelsTr)
    file_ending: str
    labels: dict
    channel_names: dict
    cases: tuple[TestCase, ...]

    @property
    def case_ids(self) -> list[str]:
        return [c.case for c in self.cases]

    def describe(self) -> dict:
        return {"folder": str(self.folder), "split": self.split, "file_ending": self.file_ending,
                "labels": dict(self.labels), "num_cases": len(self.cases), "cases": self.case_ids}


def load_test_set(folder: str | Path, split: str = "auto") -> TestSet:
    """The labelled cases of ``folder``; ``split='auto'`` takes imagesTs/labelsTs when labelsTs exists."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"test dataset {folder} does not exist")
    if split == "auto":
        split = "test" if (folder / "labelsTs").is_dir() else "train"
    if split not in SPLITS:
        raise EvaluationError(f"split {split!r} is not one of auto, {', '.join(SPLITS)}")
    images_dir, labels_dir = (folder / d for d in SPLITS[split])
    for needed in (images_dir, labels_dir):
        if not needed.is_dir():
            raise EvaluationError(f"{needed} does not exist; a test set needs images and reference labels "
                                  f"({'/'.join(SPLITS[split])}). Use a labelled dataset or another split.")
    dataset_json = load_dataset_json(folder)
    ending = dataset_json["file_ending"]
    num_channels = len(dataset_json["channel_names"])
    channels: dict[str, dict[int, Path]] = {}
    for path in visible_files(images_dir):
        parsed = split_channel(path, ending)
        if parsed is not None:
            channels.setdefault(parsed[0], {})[parsed[1]] = path
    cases = []
    for reference in visible_files(labels_dir):
        if not reference.name.endswith(ending):
            continue
        case = reference.name[: -len(ending)]
        found = channels.pop(case, {})
        missing = [c for c in range(num_channels) if c not in found]
        if missing:
            raise MissingChannelError(f"{images_dir / f'{case}_{missing[0]:04d}{ending}'} is missing: reference "
                                      f"{reference} has no image channel {missing[0]}; add it or remove the label")
        cases.append(TestCase(case, tuple(found[c] for c in range(num_channels)), reference))
    if channels:
        case = sorted(channels)[0]
        raise MissingLabelError(f"{labels_dir / (case + ending)} is missing: test image(s) of case {case!r} have "
                                "no reference label; add it or remove the images")
    if not cases:
        raise EvaluationError(f"{labels_dir} holds no {ending} reference labels; nothing to evaluate")
    return TestSet(folder, split, ending, dict(dataset_json["labels"]), dict(dataset_json["channel_names"]),
                   tuple(cases))


def check_compatible(model, test_set: TestSet) -> None:
    """The model must predict the test set's labels from its channels (nnU-Net's ``ignore`` label aside)."""
    from kt_nnunet.nnunet.model_folder import dataset_mismatches

    problems = dataset_mismatches(model, test_set.labels, test_set.channel_names, ours="test set", theirs="model")
    if problems:
        raise EvaluationError(f"model {model.folder} cannot be evaluated on test set {test_set.folder}: "
                              + "; ".join(problems) + ". Evaluate on a dataset with the model's labels and channels")


def evaluated_labels(model) -> list:
    """Foreground labels (or regions) nnU-Net evaluates for this model's label manager."""
    manager = model.label_manager
    return list(manager.foreground_regions if manager.has_regions else manager.foreground_labels)


@contextlib.contextmanager
def torch_threads(num_threads: Optional[int]):
    import torch

    saved = torch.get_num_threads()
    from kt_nnunet.devices import compute_threads

    torch.set_num_threads(int(num_threads or compute_threads()))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)


def predict_case(predictor, files: Sequence[str | Path]) -> tuple[np.ndarray, dict, float]:
    """``(segmentation, properties, seconds)`` for one case, as ``predict_from_files_sequential`` computes it."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        data, _, properties = preprocessor.run_case([str(f) for f in files], None, predictor.plans_manager,
                                                    predictor.configuration_manager, predictor.dataset_json)
        logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
        segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties,
            return_probabilities=False)
    return segmentation, properties, time.perf_counter() - start


def write_segmentation(predictor, segmentation: np.ndarray, properties: dict, path: str | Path) -> Path:
    """Write with the plans' reader/writer through a temporary name (same ending) and an atomic rename."""
    from kt_nnunet.atomic_files import atomic_file

    with atomic_file(path, keep_ending=True) as tmp:
        predictor.plans_manager.image_reader_writer_class().write_seg(segmentation, str(tmp), properties)
    return Path(path)


class _ReadOnceReader:
    """A reader that remembers what it read, so nnU-Net's ``compute_metrics`` and HD95 share one file read."""

    def __init__(self, reader):
        self.reader = reader
        self.read: dict[str, tuple[np.ndarray, dict]] = {}

    def read_seg(self, file: str):
        if file not in self.read:
            with contextlib.redirect_stdout(io.StringIO()):
                self.read[file] = self.reader.read_seg(file)
        return self.read[file]


def reader_for(file_ending: str, example_file: str | Path):
    """An instance of nnU-Net's reader/writer for a test set's label files, chosen as nnU-Net chooses it."""
    from kt_nnunet.nnunet.raw_dataset import reader_class

    return reader_class(file_ending, example_file)()


@dataclass
class CaseScores:
    metrics: dict          # nnU-Net's compute_metrics()["metrics"]: {label: {Dice, IoU, TP, FP, FN, TN, n_pred, n_ref}}
    reference: np.ndarray  # (*spatial) label map
    prediction: np.ndarray
    spacing: tuple         # in array-axis order


def case_metrics(reference_file: str | Path, prediction_file: str | Path, reader, labels: Sequence,
                 ignore_label: Optional[int] = None) -> CaseScores:
    """nnU-Net's ``compute_metrics`` for one case, plus the arrays and spacing it read."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics

    once = _ReadOnceReader(reader)
    result = compute_metrics(str(reference_file), str(prediction_file), once, list(labels), ignore_label)
    reference, properties = once.read[str(reference_file)]
    prediction, _ = once.read[str(prediction_file)]
    if reference.shape != prediction.shape:
        raise EvaluationError(f"prediction {prediction_file} has shape {prediction.shape[1:]} but reference "
                              f"{reference_file} has {reference.shape[1:]}")
    metrics = {label: {k: _plain(v) for k, v in values.items()} for label, values in result["metrics"].items()}
    return CaseScores(metrics, reference[0], prediction[0], tuple(float(s) for s in properties["spacing"]))


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def summarize_cases(metric_per_case: list[dict], labels: Sequence) -> dict:
    """``{'metric_per_case', 'mean', 'foreground_mean'}`` as nnU-Net's ``compute_metrics_on_folder`` builds it."""
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    names = list(metric_per_case[0]["metrics"][labels[0]].keys())
    with warnings.catch_warnings():  # a label absent from every case has an all-NaN Dice: NaN, as nnU-Net gives
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {label: {m: np.nanmean([c["metrics"][label][m] for c in metric_per_case]) for m in names}
                 for label in labels}
    foreground = {m: np.mean([means[k][m] for k in means if k not in (0, "0")]) for m in names}
    recursive_fix_for_json_export(means)
    recursive_fix_for_json_export(foreground)
    return {"metric_per_case": metric_per_case, "mean": means, "foreground_mean": foreground}


def write_summary_json(summary: dict, path: str | Path) -> Path:
    """nnU-Net's ``summary.json`` (``save_summary_json``: label keys as strings, keys sorted)."""
    from nnunetv2.evaluation.evaluate_predictions import save_summary_json

    with np.errstate(all="ignore"):
        save_summary_json(summary, str(path))
    return Path(path)


def count_parameters(network) -> int:
    return int(sum(p.numel() for p in network.parameters()))
