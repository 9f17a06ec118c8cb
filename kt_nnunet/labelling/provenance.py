"""What a labelled dataset records about how it was made.

* each case's record (teacher agreement, confidence, ignored fraction, reliability weights, source files),
  kept by the writer until the dataset is finalised;
* ``provenance.json``: the teachers, fusion and inference settings, package versions, every case's record
  and their summary;
* ``dataset.json``, nnU-Net's description, which points at provenance.json and the soft labels.
"""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from kt_nnunet.labelling.images import TransferalImages
from kt_nnunet.labelling.output import PROBABILITIES_DIR, PROVENANCE_FILE, LabelledDatasetWriter
from kt_nnunet.nnunet.inference import default_reader_writer_name
from kt_nnunet.nnunet.raw_dataset import write_dataset_json
from kt_nnunet.versions import installed_versions

if TYPE_CHECKING:
    from kt_nnunet.labelling.api import Labeller
    from kt_nnunet.teachers.fusion import FusedLabels

VERSION_PACKAGES = ("kt-nnunet", "nnunetv2", "torch", "numpy", "dynamic-network-architectures")


def _rounded(value) -> float:
    return round(float(value), 6)


def case_record(fused: "FusedLabels", files: Sequence[Path]) -> dict:
    """One labelled case's entry in provenance.json ``cases``."""
    record = {"teacher_agreement": _rounded(fused.teacher_agreement),
              "mean_confidence": _rounded(fused.confidence.mean()),
              "ignored_fraction": _rounded(fused.ignored_fraction),
              "source_files": [str(f) for f in files]}
    if fused.teacher_weights is not None:
        record["teacher_weights"] = [_rounded(w) for w in fused.teacher_weights]
    return record


def write_labelled_metadata(folder: Path, records: dict, labeller: "Labeller", transferal: TransferalImages,
                            writer: LabelledDatasetWriter, save_probabilities: bool) -> None:
    """dataset.json and provenance.json of the finished dataset in ``folder`` (``records``: case -> record)."""
    from kt_nnunet.atomic_files import atomic_write_text

    _write_dataset_json(folder, records, labeller, transferal, writer, save_probabilities)
    provenance = provenance_record(records, labeller, transferal, writer, save_probabilities)
    atomic_write_text(folder / PROVENANCE_FILE, json.dumps(provenance, indent=1))


def _write_dataset_json(folder: Path, records: dict, labeller: "Labeller", transferal: TransferalImages,
                        writer: LabelledDatasetWriter, save_probabilities: bool) -> None:
    first = records and next(iter(records))
    extra = {}
    if first:
        example = writer.label_path(first)
        if default_reader_writer_name(transferal.file_ending, example) != labeller.reader_name:
            extra["overwrite_image_reader_writer"] = labeller.reader_name
    channel_names = labeller.channel_names or (transferal.dataset_json or {}).get("channel_names") or {
        str(c): f"channel{c}" for c in range(len(next(iter(transferal.cases.values()))))}
    write_dataset_json(
        folder, channel_names, labeller.labels, len(records), transferal.file_ending,
        dataset_name=writer.target.name,
        description=f"{transferal.source.name} labelled by {len(labeller.teachers)} teacher(s) with kt-nnunet "
                    f"({labeller.fusion} fusion)",
        converted_by="kt-nnunet label",
        kt_nnunet={"role": "transferal", "labelled": True, "labelled_by": "kt-nnunet label",
                   "provenance": PROVENANCE_FILE,
                   "soft_labels": PROBABILITIES_DIR if save_probabilities else None},
        **extra)


def provenance_record(records: dict, labeller: "Labeller", transferal: TransferalImages,
                      writer: LabelledDatasetWriter, save_probabilities: bool) -> dict:
    """The content of provenance.json."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings_fingerprint": writer.fingerprint,
        "teachers": labeller.teacher_provenance(),
        "fusion": {"method": labeller.fusion, "weights": labeller.weights, "min_confidence": labeller.min_confidence,
                   "ignore_label": labeller.ignore_label, "label_map": labeller.label_map},
        "tta": labeller.tta, "tile_step_size": labeller.tile_step_size, "device": str(labeller.device),
        "images": {"source": str(transferal.source), "folder": str(transferal.folder),
                   "file_ending": transferal.file_ending, "num_cases": len(records)},
        "soft_labels": ({"folder": PROBABILITIES_DIR, "dtype": "float16", "key": "probabilities",
                         "content": "mean teacher probabilities" if labeller.fusion == "majority" else
                         f"{labeller.fusion} fused probabilities"} if save_probabilities else None),
        "output_labels": labeller.labels,
        "versions": {"python": platform.python_version(), **installed_versions(VERSION_PACKAGES)},
        "summary": summarize_cases(records),
        "cases": records,
        "settings": writer.settings,
    }


def summarize_cases(records: dict) -> dict:
    """Means over the cases' records (the teachers' mean weights only when every case has weights)."""
    def mean(key: str) -> Optional[float]:
        values = [r[key] for r in records.values()]
        return _rounded(np.mean(values)) if values else None

    summary = {"num_cases": len(records), "mean_teacher_agreement": mean("teacher_agreement"),
               "mean_confidence": mean("mean_confidence"), "mean_ignored_fraction": mean("ignored_fraction")}
    if records and all("teacher_weights" in r for r in records.values()):
        summary["mean_teacher_weights"] = [
            _rounded(w) for w in np.mean([r["teacher_weights"] for r in records.values()], axis=0)]
    return summary
