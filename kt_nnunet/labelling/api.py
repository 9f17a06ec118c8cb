"""``label_dataset``: teachers of any kind annotate a transferal image set into a new nnU-Net raw dataset.

    from kt_nnunet.labelling import label_dataset
    result = label_dataset(["nnUNet_results/Dataset501_Src/nnUNetTrainer__nnUNetPlans__2d", "other/model:0,1"],
                           images="Dataset502_Transfer", out="Dataset503_Labelled",
                           fusion=FusionSettings("weighted", weights=(1, 2)))

Each image is read once (with the teachers' nnU-Net reader); every teacher gives class probabilities on the
image's own grid (a network teacher preprocesses with its own plans, predicts and maps back; a predictions
folder reads its file for the case); the fusion accumulator folds them in one at a time. See
``docs/labelling.md`` and ``docs/teachers.md``.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from kt_nnunet.labelling.distributed import DistributedGroup
from kt_nnunet.labelling.errors import LabellingError
from kt_nnunet.progress import CASE, announce
from kt_nnunet.teachers.fusion import FUSION_METHODS, make_fusion
from kt_nnunet.labelling.images import (TransferalImages, check_channel_files, check_channels_read,
                                        resolve_images)
from kt_nnunet.labelling.output import PROVENANCE_FILE, LabelledDatasetWriter
from kt_nnunet.labelling.provenance import case_record, write_labelled_metadata
from kt_nnunet.teachers.base import TeacherOptions
from kt_nnunet.teachers.compatibility import check_same_inputs
from kt_nnunet.teachers.labels import parse_label_map, reconcile_labels
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.teachers.kinds import open_teachers, resolve_kind
from kt_nnunet.teachers.spec import TeacherSpec
from kt_nnunet.nnunet.inference import default_reader_writer_name, reader_writer_class, write_segmentation
from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT
from kt_nnunet.nnunet.raw_dataset import check_file_complete, read_images

DATASET_NAME = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_\-]+$")


@dataclass
class LabellingResult:
    dataset: Path                   # the labelled dataset folder (exists once ``complete``)
    complete: bool                  # False: other parts still have cases to label
    labelled: list = field(default_factory=list)   # cases this call labelled
    skipped: list = field(default_factory=list)    # cases of this part that were already finished
    part: tuple = (0, 1)            # (part_id, num_parts)
    wall_seconds: float = 0.0
    forward_seconds: float = 0.0    # time in the teachers' sliding-window network passes
    summary: dict = field(default_factory=dict)

    @property
    def provenance(self) -> Path:
        return self.dataset / PROVENANCE_FILE


def resolve_output(out: str | Path) -> Path:
    """``DatasetNNN_Name`` (placed in ``$nnUNet_raw``) or a path ending in such a folder name."""
    path = Path(str(out)).expanduser()
    if not DATASET_NAME.match(path.name):
        raise LabellingError(f"--out {out}: the output must be an nnU-Net dataset folder named DatasetNNN_Name "
                             "(e.g. Dataset503_TeacherLabels), optionally with a parent folder")
    if len(path.parts) == 1:
        from kt_nnunet.nnunet.paths import raw_folder

        path = raw_folder() / path
    return path.absolute()


def _device(device) -> torch.device:
    from kt_nnunet.devices import parse_device

    return parse_device(device)


class Labeller:
    """Loaded, mutually checked teachers plus fusion settings; ``run`` labels an image set.

    Building a ``Labeller`` opens every teacher once, through its kind; ``label_image`` fuses the teachers on one
    image.
    """

    def __init__(self, teachers: Sequence, *, fusion: FusionSettings = FusionSettings(), label_map=None,
                 checkpoint: str = DEFAULT_CHECKPOINT, device="auto", tile_step_size: float = 0.5):
        fusion, weights, tta, min_confidence = fusion.method, fusion.weights, fusion.tta, fusion.min_confidence
        if fusion not in FUSION_METHODS:
            raise LabellingError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSION_METHODS)}")
        if min_confidence is not None and not 0.0 < float(min_confidence) <= 1.0:
            raise LabellingError(f"--min-confidence {min_confidence} must be in (0, 1]")
        if not 0.0 < float(tile_step_size) <= 1.0:  # nnU-Net asserts this only when predicting
            raise LabellingError(f"--step-size {tile_step_size} must be in (0, 1] (a fraction of the patch size)")
        device = _device(device)
        self.specs = [resolve_kind(TeacherSpec.parse(t, checkpoint)) for t in teachers]
        if not self.specs:
            raise LabellingError("no teacher given; pass --teacher MODEL_FOLDER (or KIND:PATH) at least once")
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(self.specs) or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise LabellingError(f"--weights needs {len(self.specs)} non-negative numbers (one per --teacher) "
                                     f"with a positive sum, got {weights}")
        try:
            make_fusion(fusion, max(len(self.specs), 1), weights)  # argument checks only
        except ValueError as exc:
            raise LabellingError(str(exc)) from exc
        self.tta, self.tile_step_size, self.device = bool(tta), float(tile_step_size), device
        self.teachers = open_teachers(self.specs, TeacherOptions(device, self.tta, self.tile_step_size))
        self.num_channels, self.reader_name = check_same_inputs(self.teachers)
        self.label_map = parse_label_map(label_map)
        self.reconciliation = reconcile_labels(self.teachers, self.label_map)
        self.labels = dict(self.reconciliation.labels)
        self.num_classes = len(self.labels)
        self.ignore_label = self.num_classes if min_confidence is not None else None
        if self.ignore_label is not None:
            self.labels["ignore"] = self.ignore_label
        self.fusion, self.weights, self.min_confidence = fusion, weights, min_confidence
        hard = [t.name for t in self.teachers if t.hard_labels]
        if hard and len(hard) < len(self.teachers) and fusion in ("mean", "weighted"):
            import warnings

            from kt_nnunet.errors import KtNnunetWarning

            warnings.warn(f"teacher(s) {', '.join(hard)} give label maps, not probabilities: {fusion} fusion takes "
                          "them as one-hot probabilities (fully confident), so they outweigh teachers with soft "
                          "outputs; --fusion majority or staple treats every teacher's labels alike",
                          KtNnunetWarning, stacklevel=2)
        self.reader_writer = reader_writer_class(self.reader_name) if self.reader_name else None

    # ------------------------------------------------------------------ descriptions
    def teacher_description(self) -> str:
        first = next(t for t in self.teachers if t.channel_names is not None)
        return f"channel_names {first.channel_names} of {first.name}"

    @property
    def channel_names(self) -> Optional[dict]:
        return next((t.channel_names for t in self.teachers if t.channel_names is not None), None)

    def settings(self, images: TransferalImages, save_probabilities: bool) -> dict:
        """Everything that determines the output; a run resumes only a run with equal settings."""
        return {"format": 1,
                "teachers": [t.fingerprint() for t in self.teachers],
                "fusion": self.fusion, "weights": self.weights, "min_confidence": self.min_confidence,
                "tta": self.tta, "tile_step_size": self.tile_step_size, "label_map": self.label_map,
                "save_probabilities": bool(save_probabilities),
                "images": {"folder": str(images.folder), "cases": sorted(images.cases)}}

    def teacher_provenance(self) -> list:
        return [{**teacher.provenance(), "class_to_output_label": mapping}
                for teacher, mapping in zip(self.teachers, self.reconciliation.provenance())]

    # ------------------------------------------------------------------ one image
    def label_image(self, image: np.ndarray, properties: dict, case: str = ""):
        """All teachers on one image (as the teachers' reader returns it), fused: ``(FusedLabels, soft)``.

        ``soft`` is the fused probability map (for majority vote: the mean teacher probabilities). ``case``
        names the image for teachers that look their outputs up (a predictions folder).
        """
        fusion = make_fusion(self.fusion, len(self.teachers), self.weights, self.min_confidence,
                             self.ignore_label)
        for index, teacher in enumerate(self.teachers):
            probabilities = torch.from_numpy(teacher.probabilities(case, image, properties))
            fusion.add(self.reconciliation.to_output(index, probabilities))
            del probabilities
        fused = fusion.result()
        soft = fused.probabilities if fused.probabilities is not None else fusion.mean_probabilities
        return fused, soft

    @property
    def forward_seconds(self) -> float:
        return sum(t.forward_seconds for t in self.teachers)

    # ------------------------------------------------------------------ a whole set
    def run(self, images, out, *, save_probabilities: bool = False, num_parts: int = 1, part_id: int = 0,
            copy_images: bool = False, force: bool = False, progress: bool = True,
            distributed="auto") -> LabellingResult:
        """Label ``images`` into the dataset ``out``; see ``label_dataset``."""
        start = time.perf_counter()
        forward_before = self.forward_seconds
        transferal = images if isinstance(images, TransferalImages) else resolve_images(images)
        target = resolve_output(out)
        self._check_images(transferal, target)
        with DistributedGroup.start(distributed) as group:
            num_parts, part_id = _part_of(group, num_parts, part_id)
            writer = LabelledDatasetWriter(target, self.settings(transferal, save_probabilities),
                                           transferal.file_ending)
            active = group.first_on_rank_zero(lambda: writer.prepare(force))
            mine = sorted(transferal.cases)[part_id::num_parts]
            part_text = f" part {part_id + 1}/{num_parts}" if num_parts > 1 else ""
            if active:
                labelled, skipped = self._label_part(transferal, writer, mine, save_probabilities, copy_images,
                                                     progress, part_text)
            else:
                labelled, skipped = [], list(mine)
            group.barrier()
            complete = self._finalize(group, writer, active, transferal, save_probabilities)
        summary = {}
        if complete and writer.target_is_complete():
            summary = json.loads((target / PROVENANCE_FILE).read_text())["summary"]
        return LabellingResult(target, complete, labelled, skipped, (part_id, num_parts),
                               time.perf_counter() - start, self.forward_seconds - forward_before, summary)

    def _check_images(self, transferal: TransferalImages, target: Path) -> None:
        """Everything that can be wrong with the images is found before a case is written."""
        if target in (transferal.source, transferal.folder) or transferal.folder.is_relative_to(target):
            raise LabellingError(f"--out {target} is the transferal image folder itself; choose a new dataset")
        if self.num_channels is not None:
            check_channel_files(transferal, self.num_channels, self.teacher_description())
        if self.reader_writer is None:  # no teacher names a reader (predictions folders): nnU-Net's for the files
            first = next(iter(transferal.cases.values()))[0]
            self.reader_name = default_reader_writer_name(transferal.file_ending, first)
            self.reader_writer = reader_writer_class(self.reader_name)
        for teacher in self.teachers:
            teacher.use_image_reader(self.reader_writer)
            teacher.check_cases(transferal.cases)
        for files in transferal.cases.values():  # a cut-short file fails now, not after other cases were written
            for file in files:
                check_file_complete(file)
        supported = getattr(self.reader_writer, "supported_file_endings", None)
        if supported is not None and transferal.file_ending not in supported:
            raise LabellingError(
                f"{transferal.folder}: {transferal.file_ending} images, but the teachers read images with "
                f"{self.reader_name}, which supports {list(supported)}; convert them, e.g. `kt-nnunet data "
                "register-folder FOLDER --like <teacher dataset>`")

    def _label_part(self, transferal, writer, mine, save_probabilities, copy_images, progress,
                    part_text) -> tuple[list, list]:
        """Label this part's unfinished cases; returns ``(labelled, skipped as already finished)``."""
        done = writer.finished_cases()
        todo = [c for c in mine if c not in done]
        self._label_cases(transferal, writer, todo, save_probabilities, copy_images, progress, part_text)
        return todo, [c for c in mine if c in done]

    def _finalize(self, group: DistributedGroup, writer: LabelledDatasetWriter, active: bool,
                  transferal: TransferalImages, save_probabilities: bool) -> bool:
        """Write dataset.json and provenance.json once every case is labelled; whether the dataset is complete.

        Under torchrun rank 0 finalises after all ranks labelled their parts; separate ``--num-parts``
        processes each try, and the one that finds every case finished does it."""
        def metadata(folder, records):
            write_labelled_metadata(folder, records, self, transferal, writer, save_probabilities)

        all_cases = sorted(transferal.cases)
        if group.world_size > 1:
            if group.rank == 0 and active:
                writer.finalize(all_cases, metadata)
            group.barrier()
            return writer.target_is_complete()
        return writer.finalize(all_cases, metadata) if active else True

    def _label_cases(self, transferal, writer, cases, save_probabilities, copy_images, progress, part_text):
        from tqdm import tqdm

        dtype = np.uint8 if len(self.labels) <= 256 else np.uint16
        bar = tqdm(cases, desc=f"labelling{part_text}", unit="case", disable=not progress or not cases,
                   dynamic_ncols=True)
        for done, case in enumerate(bar):
            announce(CASE, done=done, total=len(cases))
            files = transferal.files_of(case)
            image, properties = read_images(files, reader=self.reader_writer)
            if self.num_channels is not None:
                check_channels_read(files, image.shape[0], self.num_channels, self.teacher_description())
            fused, soft = self.label_image(image, properties, case)
            del image
            segmentation = fused.labels.numpy().astype(dtype)
            for channel, source in enumerate(files):
                writer.place_image(source, case, channel, link=not copy_images)
            writer.write_label(case, lambda path: write_segmentation(self.reader_writer, segmentation, path,
                                                                     properties))
            if save_probabilities:
                writer.write_probabilities(case, soft.numpy())
            writer.finish_case(case, case_record(fused, files))
        if cases:
            announce(CASE, done=len(cases), total=len(cases))


def _part_of(group: DistributedGroup, num_parts: int, part_id: int) -> tuple[int, int]:
    """``(num_parts, part_id)`` of this process: its torchrun rank, else the ones asked for (checked)."""
    if group.world_size > 1:
        if num_parts != 1:
            raise LabellingError("--num-parts/--part-id cannot be combined with a torchrun launch; each "
                                 "rank is one part")
        num_parts, part_id = group.world_size, group.rank
    if num_parts < 1:
        raise LabellingError(f"--num-parts {num_parts} must be at least 1")
    if not 0 <= part_id < num_parts:
        raise LabellingError(f"--part-id {part_id} must be in 0..{num_parts - 1} (--num-parts {num_parts})")
    return num_parts, part_id


def label_dataset(teachers: Sequence, images, out, *, fusion: FusionSettings = FusionSettings(),
                  save_probabilities: bool = False, label_map=None, num_parts: int = 1, part_id: int = 0,
                  checkpoint: str = DEFAULT_CHECKPOINT, device="auto", tile_step_size: float = 0.5,
                  copy_images: bool = False, force: bool = False, progress: bool = True,
                  distributed="auto") -> LabellingResult:
    """Label the transferal ``images`` with ``teachers`` into the new nnU-Net raw dataset ``out``.

    teachers: ``[KIND:]PATH[:FOLDS]`` texts or ``TeacherSpec``s (docs/teachers.md): model folders
        (``TRAINER__PLANS__CFG``, absolute, relative, or relative to ``$nnUNet_results``), exported networks
        (``onnx:NAME.onnx``, ``torchscript:NAME.pt``, with their sidecar), predictions folders
        (``predictions:DIR``) or a plugin's kind; ``:0,1`` picks folds (default: every fold found).
    images: a folder of images, an nnU-Net dataset folder (its ``imagesTr``), or a dataset id/name in
        ``$nnUNet_raw``.
    out: ``DatasetNNN_Name`` (in ``$nnUNet_raw``) or a path ending in one.
    fusion: how the teachers are fused (``kt_nnunet.teachers.methods.FusionSettings``): the method (``mean``,
        the default, ``weighted`` with its ``weights``, ``majority``, ``staple``, ``reliability``), test-time
        mirroring (``tta``), and ``min_confidence``: voxels fused below it get the ``ignore`` label.
    label_map: reconciles different teacher label sets (dict, JSON string or file; see ``teachers.py``).
    num_parts / part_id: label only every ``num_parts``-th case, starting at ``part_id``; the part that
        finishes last writes dataset.json and provenance.json. Under ``torchrun`` each rank is a part.
    copy_images: copy the images into ``imagesTr`` instead of hard-linking them.
    force: replace an existing dataset (or discard an unfinished run) that has different settings.

    Re-running with the same settings resumes: finished cases are skipped. The dataset appears only
    when complete. Raises ``KtNnunetError`` subclasses for every user error.
    """
    labeller = Labeller(teachers, fusion=fusion, label_map=label_map, checkpoint=checkpoint, device=device,
                        tile_step_size=tile_step_size)
    return labeller.run(images, out, save_probabilities=save_probabilities, num_parts=num_parts, part_id=part_id,
                        copy_images=copy_images, force=force, progress=progress, distributed=distributed)
