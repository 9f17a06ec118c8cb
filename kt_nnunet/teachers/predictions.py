"""A predictions folder as a teacher: label maps or probabilities some other tool already wrote.

One file per transferal case, named after the case (``CASE.npz``, ``CASE.nii.gz``, ...; for a plain image
folder also after the image file), in the case's own geometry:

* probabilities as ``CASE.npz`` with ``probabilities`` ``(K, *spatial)`` in the axis order nnU-Net's reader
  gives the image (what ``nnUNetv2_predict --save_probabilities`` writes), or as a 4D NIfTI (classes last);
* or label maps (any image type nnU-Net reads): these are ``hard_labels``, one-hot to fusion.

When a folder holds both (as ``nnUNetv2_predict --save_probabilities`` leaves it), the probabilities are
used. Its classes are named by a ``dataset.json`` in the folder (``nnUNetv2_predict`` copies the model's
there) with ``labels`` as nnU-Net writes them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.nnunet.raw_dataset import (CHANNEL_PATTERN, file_ending_of, labels_without_ignore, visible_files)
from kt_nnunet.teachers.base import Teacher, TeacherOptions
from kt_nnunet.teachers.errors import PredictionsFolderError
from kt_nnunet.teachers.spec import TeacherSpec

PROBABILITIES_ENDING = ".npz"
_METADATA = ("dataset.json", "plans.json", "predict_from_raw_data_args.json")


def prediction_files(folder: Path) -> dict:
    """``{case: {ending: file}}`` for the prediction files in ``folder`` (.npz and images nnU-Net reads)."""
    found: dict = {}
    for path in visible_files(folder):
        if path.name in _METADATA:
            continue
        ending = PROBABILITIES_ENDING if path.name.endswith(PROBABILITIES_ENDING) else file_ending_of(path)
        if ending is not None:
            found.setdefault(path.name[: -len(ending)], {})[ending] = path
    return found


def _case_names(case: str, files) -> list[str]:
    """A case's prediction may be named after its case id or after its (first channel's) image file."""
    names = [case]
    if files:
        stem = Path(files[0]).name
        ending = file_ending_of(stem)
        stem = stem[: -len(ending)] if ending else stem
        match = CHANNEL_PATTERN.match(stem)
        names += [n for n in (stem, match["case"] if match else None) if n and n not in names]
    return names


class PredictionsTeacher(Teacher):
    kind = "predictions"

    def __init__(self, spec: TeacherSpec, options: Optional[TeacherOptions] = None):
        super().__init__(spec)
        self.folder = Path(spec.path)
        if not self.folder.is_dir():
            raise PredictionsFolderError(f"predictions teacher {self.folder} is not a folder; give the folder "
                                         "holding one prediction file per transferal case")
        self.files = prediction_files(self.folder)
        if not self.files:
            raise PredictionsFolderError(f"{self.folder} holds no prediction files (CASE.npz, or label images such "
                                         "as CASE.nii.gz); give the folder a tool wrote its predictions to")
        self._labels = self._read_labels()
        soft = [c for c, by_ending in self.files.items() if PROBABILITIES_ENDING in by_ending]
        self.mode = "npz" if soft else "images"
        self.hard_labels = not soft and not self._images_are_4d()
        self._reader_writer = None
        self._chosen: dict = {}  # case -> the file used
        self._fingerprint: Optional[dict] = None

    # ------------------------------------------------------------------ what it is
    def _read_labels(self) -> dict:
        path = self.folder / "dataset.json"
        if not path.is_file():
            raise PredictionsFolderError(
                f"{path} is missing: a predictions teacher needs its class names; write a dataset.json with "
                '"labels" (e.g. {"labels": {"background": 0, "organ": 1}}), as nnUNetv2_predict does')
        try:
            labels = json.loads(path.read_text())["labels"]
            labels = labels_without_ignore({str(k): int(v) for k, v in labels.items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PredictionsFolderError(f"{path}: no readable \"labels\" ({exc}); give "
                                         '{"labels": {"background": 0, ...}}') from exc
        if sorted(labels.values()) != list(range(len(labels))):
            raise PredictionsFolderError(f"{path}: labels {labels} must be 0, 1, 2, ... without gaps")
        return labels

    def _images_are_4d(self) -> bool:
        first = next(f for by_ending in self.files.values() for f in by_ending.values())
        if not str(first).endswith((".nii.gz", ".nii")):
            return False
        import nibabel

        return len(nibabel.load(str(first)).shape) == 4

    @property
    def labels(self) -> dict:
        return dict(self._labels)

    @property
    def reader_name(self) -> Optional[str]:
        plans = self.folder / "plans.json"  # nnUNetv2_predict copies the model's plans: its reader made the files
        if plans.is_file():
            try:
                return json.loads(plans.read_text()).get("image_reader_writer")
            except ValueError:
                return None
        return None

    def use_image_reader(self, reader_writer) -> None:
        self._reader_writer = reader_writer

    # ------------------------------------------------------------------ checks before labelling
    def _file_for(self, case: str, files) -> Optional[Path]:
        for name in _case_names(case, files):
            by_ending = self.files.get(name, {})
            if self.mode == "npz":
                if PROBABILITIES_ENDING in by_ending:
                    return by_ending[PROBABILITIES_ENDING]
            else:
                images = [f for e, f in by_ending.items() if e != PROBABILITIES_ENDING]
                if images:
                    return images[0]
        return None

    def check_cases(self, cases: dict) -> None:
        for case, files in cases.items():
            file = self._file_for(case, files)
            if file is None:
                what = "CASE.npz probabilities" if self.mode == "npz" else "a label map"
                raise PredictionsFolderError(
                    f"{self.folder}: no prediction for transferal case {case!r} ({what} named "
                    f"{' or '.join(_case_names(case, files))}); every transferal case needs one. Predict the missing "
                    "case, or label only the images the folder covers")
            self._chosen[case] = file

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            from kt_nnunet.checksums import sha256_of

            files = self._chosen or {c: f for c, by in self.files.items() for f in by.values()}
            self._fingerprint = {"kind": self.kind, "folder": str(self.folder), "mode": self.mode,
                                 "dataset_json_sha256": sha256_of(self.folder / "dataset.json"),
                                 "files": {case: [Path(f).name, sha256_of(f)] for case, f in sorted(files.items())}}
        return self._fingerprint

    def provenance(self) -> dict:
        record = dict(self.fingerprint())
        record["labels"] = self.labels
        record["hard_labels"] = self.hard_labels
        return record

    # ------------------------------------------------------------------ one case
    def probabilities(self, case: str, image: np.ndarray, properties: dict) -> np.ndarray:
        file = self._chosen.get(case) or self._file_for(case, [])
        if file is None:
            raise PredictionsFolderError(f"{self.folder}: no prediction for transferal case {case!r}")
        spatial = tuple(image.shape[1:])
        if self.mode == "npz":
            probabilities = self._read_npz(file)
        elif not self.hard_labels:
            probabilities = self._read_4d_nifti(file, properties)
        else:
            return self._one_hot(self._read_label_map(file, properties), file, spatial)
        if probabilities.shape[0] != len(self._labels) or tuple(probabilities.shape[1:]) != spatial:
            raise PredictionsFolderError(
                f"{file}: probabilities of shape {list(probabilities.shape)} but its image has {len(self._labels)} "
                f"classes x {list(spatial)} voxels (labels {self._labels}); write them on the image's own grid, "
                "classes first")
        return probabilities.astype(np.float32, copy=False)

    def _read_npz(self, file: Path) -> np.ndarray:
        try:
            with np.load(file, allow_pickle=False) as archive:  # never unpickle someone else's file
                key = "probabilities" if "probabilities" in archive.files else archive.files[0]
                return np.asarray(archive[key])
        except (OSError, ValueError, IndexError) as exc:
            raise PredictionsFolderError(f"{file}: not a readable .npz of probabilities ({exc}); write it with "
                                         "numpy.savez(probabilities=...)") from exc

    def _read_4d_nifti(self, file: Path, properties: dict) -> np.ndarray:
        import nibabel

        data = np.asanyarray(nibabel.load(str(file)).dataobj)
        reader = getattr(self._reader_writer, "__name__", "SimpleITKIO")
        if data.ndim != 4:
            raise PredictionsFolderError(f"{file}: a {data.ndim}D image among 4D probability maps; write every case "
                                         "the same way")
        if reader == "SimpleITKIO":  # SimpleITK arrays are (z, y, x); NIfTI stores (x, y, z)
            return np.ascontiguousarray(data.transpose(3, 2, 1, 0))
        if reader == "NibabelIO":
            return np.ascontiguousarray(data.transpose(3, 0, 1, 2))
        raise PredictionsFolderError(f"{file}: 4D probability NIfTIs are read for images read with SimpleITKIO or "
                                     f"NibabelIO, not {reader}; write CASE.npz probabilities instead")

    def _read_label_map(self, file: Path, properties: dict) -> np.ndarray:
        import contextlib
        import io

        from kt_nnunet.nnunet.raw_dataset import reader_class

        reader = self._reader_writer or reader_class(file_ending_of(file), file)
        with contextlib.redirect_stdout(io.StringIO()):
            segmentation, seg_properties = reader().read_seg(str(file))
        ours, theirs = properties.get("spacing"), seg_properties.get("spacing")
        if ours is not None and theirs is not None and (
                len(ours) != len(theirs) or not np.allclose(ours, theirs, rtol=1e-3)):
            raise PredictionsFolderError(f"{file}: spacing {list(theirs)} but its image has {list(ours)}; the label "
                                         "map must be on the image's own grid")
        return segmentation[0]

    def _one_hot(self, segmentation: np.ndarray, file: Path, spatial: tuple) -> np.ndarray:
        if tuple(segmentation.shape) != spatial:
            raise PredictionsFolderError(f"{file}: label map of shape {list(segmentation.shape)} but its image has "
                                         f"{list(spatial)}; the label map must be on the image's own grid")
        values = np.unique(segmentation)
        num_classes = len(self._labels)
        if values.min() < 0 or values.max() >= num_classes or not np.all(values == np.round(values)):
            raise PredictionsFolderError(f"{file}: label values {values[:10].tolist()} but dataset.json declares "
                                         f"{num_classes} classes {self._labels}")
        one_hot = np.zeros((num_classes, *spatial), dtype=np.float32)
        np.put_along_axis(one_hot, segmentation.astype(np.int64)[None], 1.0, axis=0)
        return one_hot
