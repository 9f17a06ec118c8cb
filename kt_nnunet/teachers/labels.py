"""Teachers' label sets: one output label set for teachers that may name or number their classes differently.

Label sets that differ are an error unless a label map reconciles them::

    {"labels": {"background": 0, "organ": 1},       # optional: the output labels (default: teacher 0's)
     "1": {"liver": "organ", "tumour": "organ"}}     # teacher index -> {teacher label: output label}

Each teacher class goes to the output label of the same name unless mapped; classes mapped to the same
output label have their probabilities summed. Every output label must receive at least one class of
every teacher, so no teacher silently votes against a class it cannot see.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from kt_nnunet.teachers.errors import LabelMapError, TeacherMismatchError


def _class_names(labels: dict) -> list[str]:
    by_value = {value: name for name, value in labels.items()}
    return [by_value[v] for v in range(len(by_value))]


def _check_consecutive(labels: dict, where: str) -> None:
    values = sorted(labels.values())
    if values != list(range(len(values))) or labels.get("background", 0) != 0:
        raise LabelMapError(f"{where}: labels must be background 0 and then 1, 2, ... without gaps, got {labels}")


@dataclass
class LabelReconciliation:
    """The output label set and, per teacher, the output class of each teacher class (None: identity)."""

    labels: dict
    class_index: list  # per teacher: LongTensor (C_teacher,) of output classes, or None when identical

    def to_output(self, teacher: int, probabilities: torch.Tensor) -> torch.Tensor:
        index = self.class_index[teacher]
        if index is None:
            return probabilities
        out = torch.zeros((len(self.labels), *probabilities.shape[1:]), dtype=probabilities.dtype)
        return out.index_add_(0, index, probabilities)

    def provenance(self) -> list:
        return [None if idx is None else idx.tolist() for idx in self.class_index]


def parse_label_map(value) -> Optional[dict]:
    """A label map from a dict, a JSON string or a JSON file path."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value)
    if Path(text).is_file():
        text = Path(text).read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelMapError(f"--label-map is neither a JSON file nor valid JSON ({exc}); example: "
                            '\'{"1": {"tumour": "lesion"}}\'') from exc
    if not isinstance(parsed, dict):
        raise LabelMapError("--label-map must be a JSON object: {teacher index: {teacher label: output label}}")
    return parsed


def reconcile_labels(teachers: Sequence, label_map: Optional[dict] = None) -> LabelReconciliation:
    """Check the teachers' label sets (each teacher's ``labels``, named by its ``name``); with ``label_map``,
    build the class mapping onto the output labels."""
    teacher_labels = [dict(t.labels) for t in teachers]
    if not label_map:
        for i, labels in enumerate(teacher_labels[1:], start=1):
            if labels != teacher_labels[0]:
                raise TeacherMismatchError(
                    f"teacher {i} ({teachers[i].name}) has labels {labels} but teacher 0 ({teachers[0].name}) has "
                    f"{teacher_labels[0]}; teachers must share one label set, or pass --label-map to reconcile "
                    f"them, e.g. '{{\"{i}\": {{\"<teacher {i} label>\": \"<teacher 0 label>\"}}}}'")
        return LabelReconciliation(dict(teacher_labels[0]), [None] * len(teachers))

    label_map = dict(label_map)
    output = label_map.pop("labels", None)
    output = {str(k): int(v) for k, v in (output or teacher_labels[0]).items()}
    _check_consecutive(output, "--label-map 'labels'")
    for key in label_map:
        if not (str(key).isdigit() and int(key) < len(teachers)):
            raise LabelMapError(f"--label-map key {key!r} is not a teacher index (0..{len(teachers) - 1}, in --teacher "
                                "order) nor 'labels'")
    indices = []
    for i, (teacher, labels) in enumerate(zip(teachers, teacher_labels)):
        mapping = label_map.get(str(i), label_map.get(i, {})) or {}
        unknown = sorted(set(mapping) - set(labels))
        if unknown:
            raise LabelMapError(f"--label-map maps {unknown} of teacher {i} ({teacher.name}), which has no such "
                                f"label; its labels are {sorted(labels)}")
        targets = []
        for name in _class_names(labels):
            target = mapping.get(name, name)
            if target not in output:
                raise LabelMapError(f"teacher {i} ({teacher.name}) label {name!r} maps to {target!r}, which is not "
                                    f"an output label {sorted(output)}; map it in --label-map "
                                    f"('{{\"{i}\": {{\"{name}\": \"<output label>\"}}}}')")
            targets.append(output[target])
        missing = sorted(n for n, v in output.items() if v not in targets)
        if missing:
            raise LabelMapError(f"teacher {i} ({teacher.name}) predicts nothing that maps to output label(s) "
                                f"{missing}; every teacher must cover every output label (map one of its labels "
                                "there, or leave the label out of 'labels')")
        identity = targets == list(range(len(targets))) and len(targets) == len(output)
        indices.append(None if identity else torch.tensor(targets, dtype=torch.long))
    return LabelReconciliation(output, indices)
