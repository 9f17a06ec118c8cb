"""Whether teachers fit: each other (labelling one image set) and a student's data (online transfer).

Teachers must agree on what they output (the label set; see ``labels.py`` for label maps) and what they
take (the number of input channels, and the image reader, which fixes the axis order). They may differ in
everything else: architecture, spacing, normalisation and intensity statistics, patch size, 2D vs 3D,
folds. Online teachers label batches preprocessed with the *student's* plans, so they must also have
been preprocessed the same way (spacing, axis order, normalisation and, for schemes that use dataset
statistics such as CT, those statistics); otherwise offline mode (each teacher's own preprocessing) is the way.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from kt_nnunet.nnunet.model_folder import TrainedModel, dataset_mismatches
from kt_nnunet.teachers.errors import TeacherMismatchError

# Normalization schemes that use dataset-level statistics (the others normalise each image on its own).
SCHEMES_WITH_DATASET_STATISTICS = ("CTNormalization",)
OFFLINE_HINT = ("Online teachers see batches preprocessed with the student's plans. Use offline mode instead: "
                "`kt-nnunet transfer` without --online labels the images with each teacher's own preprocessing "
                "(`kt-nnunet label`) and trains on the result.")


def check_same_inputs(teachers: Sequence) -> tuple[Optional[int], Optional[str]]:
    """Teachers labelling one image set (:class:`~kt_nnunet.teachers.base.Teacher`): their shared number of input
    channels and image reader name; None for either when no teacher states it (e.g. only predictions folders)."""
    stating = [(i, t) for i, t in enumerate(teachers) if t.num_input_channels is not None]
    for i, teacher in stating[1:]:
        j, first = stating[0]
        if teacher.num_input_channels != first.num_input_channels:
            raise TeacherMismatchError(
                f"teacher {i} ({teacher.name}) takes {teacher.num_input_channels} input channel(s) "
                f"{teacher.channel_names} but teacher {j} ({first.name}) takes {first.num_input_channels} "
                f"{first.channel_names}; teachers labelling one image set must take the same channels")
    reading = [(i, t) for i, t in enumerate(teachers) if t.reader_name is not None]
    for i, teacher in reading[1:]:
        j, first = reading[0]
        if teacher.reader_name != first.reader_name:
            raise TeacherMismatchError(
                f"teacher {i} ({teacher.name}) reads images with {teacher.reader_name} but teacher {j} "
                f"({first.name}) with {first.reader_name}; these readers return different axis orders, so their "
                "outputs cannot be fused. Use teachers trained with the same image_reader_writer (plans.json)")
    return (stating[0][1].num_input_channels if stating else None), (reading[0][1].reader_name if reading else None)


def label_differences(student_dataset_json: dict, teacher: TrainedModel) -> list:
    """How a student's dataset and a teacher disagree on labels and channels (the student learns its labels)."""
    problems = dataset_mismatches(teacher, student_dataset_json["labels"], student_dataset_json["channel_names"],
                                  ours="student dataset", theirs="teacher")
    if teacher.label_manager.has_regions:
        problems.append("the teacher was trained on regions; online transfer needs label maps")
    return problems


def preprocessing_differences(student_plans: dict, student_configuration: dict, teacher: TrainedModel) -> list:
    """Differences that would make the student's batches look different from what the teacher learnt on."""
    theirs = teacher.configuration_manager.configuration
    problems = []
    if len(student_configuration["spacing"]) != len(theirs["spacing"]) or not np.allclose(
            student_configuration["spacing"], theirs["spacing"], rtol=1e-3):
        problems.append(f"spacing {student_configuration['spacing']} (student) vs {theirs['spacing']} (teacher)")
    if student_plans.get("transpose_forward") != teacher.plans.get("transpose_forward"):
        problems.append(f"axis order {student_plans.get('transpose_forward')} (student) vs "
                        f"{teacher.plans.get('transpose_forward')} (teacher)")
    schemes = student_configuration["normalization_schemes"]
    if schemes != theirs["normalization_schemes"]:
        problems.append(f"normalization {schemes} (student) vs {theirs['normalization_schemes']} (teacher)")
    elif student_configuration.get("use_mask_for_norm") != theirs.get("use_mask_for_norm"):
        problems.append("normalization masks (use_mask_for_norm) differ")
    else:
        ours_stats = student_plans.get("foreground_intensity_properties_per_channel", {})
        their_stats = teacher.plans.get("foreground_intensity_properties_per_channel", {})
        for channel, scheme in enumerate(schemes):
            if scheme not in SCHEMES_WITH_DATASET_STATISTICS:
                continue
            a, b = ours_stats.get(str(channel), {}), their_stats.get(str(channel), {})
            keys = ("mean", "std", "percentile_00_5", "percentile_99_5")
            if any(not np.isclose(a.get(k, np.nan), b.get(k, np.nan), rtol=1e-3) for k in keys):
                problems.append(f"{scheme} intensity statistics of channel {channel} differ "
                                f"(student {[a.get(k) for k in keys]}, teacher {[b.get(k) for k in keys]})")
    return problems


def check_student_dataset(dataset_name: str, dataset_json: dict, teachers: Sequence[TrainedModel]) -> None:
    """A student learns its teachers' label set from its dataset: one error listing every disagreement."""
    problems = [f"teacher {teacher.folder}: {p}" for teacher in teachers
                for p in label_differences(dataset_json, teacher)]
    if problems:
        raise TeacherMismatchError(
            f"the student's dataset {dataset_name} is inconsistent with its teachers: " + "; ".join(problems)
            + ". Train the student on a dataset with the teachers' labels and channels (e.g. one made by "
            "`kt-nnunet label`).")


def check_online_teachers(student_plans: dict, student_configuration: dict, student_dataset_json: dict,
                          teachers: Sequence[TrainedModel]) -> None:
    """One error listing every reason the teachers cannot label this student's batches online."""
    check_student_dataset(student_plans.get("dataset_name"), student_dataset_json, teachers)
    problems = [f"teacher {teacher.folder}: {p}" for teacher in teachers
                for p in preprocessing_differences(student_plans, student_configuration, teacher)]
    if problems:
        raise TeacherMismatchError("teacher preprocessing differs from the student's plans: "
                                   + "; ".join(problems) + ". " + OFFLINE_HINT)
