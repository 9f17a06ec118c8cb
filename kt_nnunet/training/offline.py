"""Offline transfer (the paper's method): a student trained on a teacher-labelled dataset.

The dataset comes from ``kt-nnunet label``: its ``labelsTr`` are the fused teacher labels, possibly with
nnU-Net's ``ignore`` label on low-confidence voxels, which nnU-Net's loss and validation already mask.
So training is nnU-Net's own; this trainer adds two seams:

* ``kt_provenance``: the labelling provenance (teachers, checkpoints' sha256, fusion) goes into the
  model folder (``kt_provenance.json``, plus a copy of the dataset's ``provenance.json``);
* ``perform_actual_validation``: nnU-Net's final validation compares with ``labelsTr``, i.e. it measures
  agreement with the teacher labels; it is written to ``fold_N/kt_validation.json`` as such. With the
  plans key ``kt_reference`` (``{"labels": DIR, "images": DIR or null}``) it also reports real Dice
  against labelled reference data: the reference images are predicted (or, without ``images``, the
  validation predictions are matched to reference labels by case name).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.atomic_files import atomic_write_json
from kt_nnunet.nnunet.evaluation import case_metrics
from kt_nnunet.nnunet.model_folder import predictor_for_network
from kt_nnunet.nnunet.paths import folder_if_set
from kt_nnunet.training.base import nnUNetTrainerKTBase

REFERENCE_KEY = "kt_reference"
VALIDATION_FILE = "kt_validation.json"
LABELLING_PROVENANCE_COPY = "kt_labelling_provenance.json"


def labelling_provenance_file(dataset_name: str) -> Optional[Path]:
    """The ``provenance.json`` that ``kt-nnunet label`` wrote beside the raw dataset, if reachable."""
    raw = folder_if_set("nnUNet_raw")
    if raw is None:
        return None
    folder = raw / dataset_name
    try:
        meta = json.loads((folder / "dataset.json").read_text()).get("kt_nnunet") or {}
    except (OSError, json.JSONDecodeError):
        return None
    path = folder / (meta.get("provenance") or "provenance.json")
    return path if path.is_file() else None


def summarize_metrics(per_case: list, labels: list) -> dict:
    """Mean Dice per label over cases (NaN-aware, as nnU-Net) and their foreground mean."""
    if not per_case:
        return {"num_cases": 0, "foreground_dice": None, "dice_per_label": {}}
    per_label = {str(label): float(np.nanmean([c["metrics"][label]["Dice"] for c in per_case])) for label in labels}
    finite = [v for v in per_label.values() if np.isfinite(v)]
    return {"num_cases": len(per_case), "foreground_dice": float(np.mean(finite)) if finite else None,
            "dice_per_label": per_label}


class nnUNetTrainerKTOffline(nnUNetTrainerKTBase):
    """Student on a ``kt-nnunet label`` dataset; validation reports agreement with the teachers."""

    def kt_provenance(self) -> dict:
        record = super().kt_provenance()
        record["mode"] = "offline"
        source = labelling_provenance_file(self.plans_manager.dataset_name)
        if source is None:
            record["labelling"] = None
            record["labels_source"] = "labelsTr without a kt-nnunet labelling provenance (not teacher-labelled by " \
                                      "kt-nnunet, or nnUNet_raw unset)"
            return record
        provenance = json.loads(source.read_text())
        shutil.copyfile(source, Path(self.output_folder_base) / LABELLING_PROVENANCE_COPY)
        record["labels_source"] = "teacher labels (kt-nnunet label)"
        record["labelling"] = {"provenance_file": str(source), "copy": LABELLING_PROVENANCE_COPY,
                               **{k: provenance.get(k) for k in ("teachers", "fusion", "tta", "summary",
                                                                 "settings_fingerprint")}}
        return record

    def perform_actual_validation(self, save_probabilities: bool = False):
        super().perform_actual_validation(save_probabilities)
        if self.local_rank != 0:
            return
        report = {"teacher_agreement": self._teacher_agreement(), "reference": None}
        reference = self.configuration_manager.configuration.get(REFERENCE_KEY)
        if reference:
            report["reference"] = self.evaluate_reference(reference["labels"], reference.get("images"))
            self.print_to_log_file(f"kt-nnunet: Dice against the reference labels: "
                                   f"{report['reference']['foreground_dice']}")
        atomic_write_json(Path(self.output_folder) / VALIDATION_FILE, report, default=str)

    def _teacher_agreement(self) -> dict:
        summary = Path(self.output_folder) / "validation" / "summary.json"
        metrics = json.loads(summary.read_text())
        return {"what": "Dice of the final validation against labelsTr = the teacher labels",
                "foreground_dice": metrics["foreground_mean"]["Dice"],
                "dice_per_label": {k: v["Dice"] for k, v in metrics["mean"].items()},
                "num_cases": len(metrics["metric_per_case"]), "summary": str(summary)}

    def evaluate_reference(self, labels_folder: str, images_folder: Optional[str] = None) -> dict:
        """Real Dice: predict ``images_folder`` (or reuse the validation predictions) against ``labels_folder``."""
        ending = self.dataset_json["file_ending"]
        if images_folder:
            predictions = Path(self.output_folder) / "reference"
            predictions.mkdir(exist_ok=True)
            self.set_deep_supervision_enabled(False)
            self.network.eval()
            network = self.network.module if self.is_ddp else self.network
            network = getattr(network, "_orig_mod", network)  # torch.compile wrapper
            predictor = predictor_for_network(network, self.plans_manager, self.configuration_manager,
                                              [network.state_dict()], self.dataset_json, type(self).__name__,
                                              self.inference_allowed_mirroring_axes, device=self.device)
            predictor.predict_from_files_sequential(str(images_folder), str(predictions), False, True, None)
            self.set_deep_supervision_enabled(True)
        else:
            predictions = Path(self.output_folder) / "validation"
        reader = self.plans_manager.image_reader_writer_class()
        labels = self.label_manager.foreground_labels
        per_case = [{"metrics": case_metrics(Path(labels_folder) / p.name, p, reader, labels,
                                             self.label_manager.ignore_label).metrics}
                    for p in sorted(predictions.glob(f"*{ending}")) if (Path(labels_folder) / p.name).is_file()]
        return {"what": f"Dice against reference labels in {labels_folder}"
                        + (f" (images {images_folder})" if images_folder else " (validation cases)"),
                **summarize_metrics(per_case, labels)}
