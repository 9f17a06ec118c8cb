"""The cross-modality real set: abdominal CT as the source, abdominal MR as transferal and test.

Source files: the CT and MR reference files of the TotalSegmentator 2.18.0 sdist (fetched and cached by
``kt_nnunet.data.fetch``). Organs 1-7 share their ids in TotalSegmentator's CT ``total`` and MR
``total_mr`` tasks (1 spleen, 2 right kidney, 3 left kidney, 4 gallbladder, 5 liver, 6 stomach,
7 pancreas); every other id becomes background.

**The labels are TotalSegmentator's own predictions** (its test references), not manual annotations:
Dice against them measures agreement with that model, not accuracy against ground truth.

Cases are 2D axial slices at 3 mm, both volumes reoriented to RAS so that CT and MR slices look the
same way round. All CT slices with organs form the source set; the MR slices are dealt into
transferal and test slabs with ``gap`` dropped slices between them (as in the brain demo). Images keep
their own units (HU for CT), and the channel is named ``zscore`` so that nnU-Net normalises every
image by its own mean and std: CT normalisation (global HU statistics) would be meaningless on MR.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.data.demo import assign_slabs
from kt_nnunet.data.fetch import TOTALSEG_VERSION, fetch_totalsegmentator
from kt_nnunet.nnunet.raw_dataset import nnunet_dataset_name, write_dataset_json, write_image

ORGANS = ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas")
LABELS = {"background": 0, **{name: i for i, name in enumerate(ORGANS, start=1)}}
VOLUMES = {"ct": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
           "mr": ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz")}


@dataclass(frozen=True)
class CrossModalityDatasets:
    source: Path
    transferal: Path
    test: Path

    def as_dict(self) -> dict:
        return {"source": self.source, "transferal": self.transferal, "test": self.test}


def load_volume(folder: Path, modality: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Image (float32), organ labels 0-7 (uint8), spacing (x, y, z): RAS-reoriented (x, y, z) arrays."""
    import nibabel as nib

    image_name, label_name = VOLUMES[modality]
    image = nib.as_closest_canonical(nib.load(str(folder / image_name)))
    labels = nib.as_closest_canonical(nib.load(str(folder / label_name)))
    seg = np.asarray(labels.dataobj).astype(np.int32)
    seg = np.where(seg <= len(ORGANS), seg, 0).astype(np.uint8)
    return image.get_fdata(dtype=np.float32), seg, tuple(float(s) for s in image.header.get_zooms()[:3])


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    return np.ascontiguousarray(volume[:, :, z].T[::-1])


def build_crossmodality(out: Optional[str | Path] = None, *, base_id: int = 910, name: str = "Abdomen",
                        block: int = 3, gap: int = 1, cache_dir: Optional[str | Path] = None,
                        sdist: Optional[str | Path] = None, force: bool = False) -> CrossModalityDatasets:
    """Write ``Dataset{base_id}_{name}CTSource``, ``{base_id+1}_{name}MRTransferal``, ``{base_id+2}_{name}MRTest``.

    Fetches the TotalSegmentator sdist on first use (``sdist`` may name a local copy); ``out`` defaults to
    ``$nnUNet_raw``. All three datasets appear together or not at all.
    """
    folder = fetch_totalsegmentator(cache_dir, sdist=sdist)
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    ct, ct_seg, ct_spacing = load_volume(folder, "ct")
    mr, mr_seg, mr_spacing = load_volume(folder, "mr")
    ct_slices = [int(z) for z in np.flatnonzero(ct_seg.any(axis=(0, 1)))]
    mr_candidates = [int(z) for z in np.flatnonzero(mr_seg.any(axis=(0, 1)))]
    mr_slabs = assign_slabs(mr_candidates, block, gap, roles=("transferal", "test"))
    plan = {"source": ("CT", ct, ct_seg, ct_spacing, ct_slices),
            "transferal": ("MR", mr, mr_seg, mr_spacing, mr_slabs["transferal"]),
            "test": ("MR", mr, mr_seg, mr_spacing, mr_slabs["test"])}
    targets = {role: Path(out) / nnunet_dataset_name(base_id + i, f"{name}{modality}{role.capitalize()}")
               for i, (role, (modality, *_)) in enumerate(plan.items())}
    with contextlib.ExitStack() as stack:
        staging = {role: stack.enter_context(staged_directory(t, force=force)) for role, t in targets.items()}
        for role, (modality, image, seg, spacing, slices) in plan.items():
            labelled = role != "transferal"
            dataset = staging[role]
            (dataset / "imagesTr").mkdir()
            if labelled:
                (dataset / "labelsTr").mkdir()
            in_plane = (spacing[1], spacing[0])  # (y, x) array order of the 2D slices
            for z in slices:
                case = f"{modality.lower()}_z{z:03d}"
                write_image(dataset / "imagesTr" / f"{case}_0000.nii.gz", _axial(image, z), in_plane)
                if labelled:
                    write_image(dataset / "labelsTr" / f"{case}.nii.gz", _axial(seg, z), in_plane)
            write_dataset_json(
                dataset, {"0": "zscore"}, LABELS, len(slices), ".nii.gz", dataset_name=targets[role].name,
                description=f"kt-nnunet cross-modality set, {role} role: axial {modality} slices of the "
                            f"TotalSegmentator {TOTALSEG_VERSION} sdist reference files, organs 1-7. The labels "
                            "are TotalSegmentator's predictions, not manual annotations.",
                reference="Wasserthal et al., Radiology: AI 2023 (TotalSegmentator); sdist tests/reference_files",
                license="Apache-2.0 (totalsegmentator package); image provenance not stated upstream",
                converted_by="kt-nnunet data crossmodality",
                kt_nnunet={"role": role, "labelled": labelled, "builder": "kt_nnunet.data.crossmodality",
                           "modality": modality, "view": "axial", "slices": slices, "block": block, "gap": gap,
                           "labels_are": "TotalSegmentator model predictions (pseudo-labels)"})
    return CrossModalityDatasets(**targets)
