"""The embedded real default: brain MRI datasets for the three roles, built from nilearn's MNI152 template.

The nilearn wheel ships the MNI ICBM152 2009a (symmetric) T1 template with grey- and white-matter
probability maps (``nilearn/datasets/data/``). kt-nnunet reads those files directly with nibabel (no
network, no nilearn import cost) and makes 2D axial slices with labels 0 background / 1 GM / 2 WM
(the argmax rule of data-sources.md B). Three nnU-Net raw datasets come out:

- **source** (labelled): the teachers train on it; the template's own appearance plus mild noise;
- **transferal** (images only): the teachers label it; an appearance shift (another "scanner");
- **test** (labelled): never trained on; the same shifted appearance as the transferal set.

Leakage: slices are grouped into slabs of ``block`` consecutive slices; slabs go to the roles in turn
(source, transferal, test, source, ...) and ``gap`` slices between neighbouring slabs are dropped. So
every voxel belongs to at most one role and a test slice is at least ``gap + 1`` slices from any
source or transferal slice. Only axial slices are used: other views would cross the same voxels, and
sagittal slabs would mirror each other (the template is left-right symmetric). docs/datasets.md says more.

``dims=3`` makes volumes instead (for ``3d_fullres``): each slab, cropped to the brain, is cut into its
anterior and posterior halves, two cases of the same role (left and right halves would mirror each other).
"""
from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.data.synth_domain import DomainConfig, apply_appearance
from kt_nnunet.nnunet.raw_dataset import DatasetError, nnunet_dataset_name, write_dataset_json, write_image

ROLES = ("source", "transferal", "test")
LABELS = {"background": 0, "grey_matter": 1, "white_matter": 2}
MNI_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
# Source: the template as it is, with a little noise. Target (transferal and test): a different
# "scanner": darker grey matter (gamma), coil shading, a softer point-spread function, more noise.
DEMO_SOURCE_DOMAIN = DomainConfig(noise=0.01)
DEMO_TARGET_DOMAIN = DomainConfig(gamma=2.0, contrast=0.9, bias_field=0.3, blur_mm=1.5, noise=0.05)


class DemoDataError(DatasetError):
    """The nilearn template files are not available."""


@dataclass(frozen=True)
class DemoDatasets:
    source: Path
    transferal: Path
    test: Path
    downstream: Optional[Path] = None  # the transferal images with their true labels (fine-tuning pool)

    def as_dict(self) -> dict:
        roles = {"source": self.source, "transferal": self.transferal, "test": self.test}
        return roles if self.downstream is None else {**roles, "downstream": self.downstream}


def mni152_folder() -> Path:
    """``nilearn/datasets/data`` of the installed nilearn wheel (found without importing nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DemoDataError("nilearn is not installed; the demo datasets are built from the MNI152 template "
                            "inside its wheel: `pip install nilearn==0.14.1`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [f for f in MNI_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DemoDataError(f"{folder / missing[0]} is missing from the installed nilearn; reinstall it: "
                            "`pip install --force-reinstall nilearn==0.14.1`")
    return folder


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return volume
    shape = [s // factor * factor for s in volume.shape]
    v = volume[: shape[0], : shape[1], : shape[2]]
    return v.reshape(shape[0] // factor, factor, shape[1] // factor, factor, shape[2] // factor, factor).mean((1, 3, 5))


def load_mni152(resolution_mm: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The T1 template scaled to [0, 1] and its 0/1/2 label map, as (x, y, z) RAS arrays at ``resolution_mm``."""
    import nibabel as nib

    if resolution_mm not in (1, 2, 3, 4):
        raise DatasetError(f"resolution_mm={resolution_mm}: use 1, 2, 3 or 4 (integer downsampling of 1 mm)")
    folder = mni152_folder()
    maps = {}
    for key, name in MNI_FILES.items():
        data = np.asarray(nib.load(str(folder / name)).dataobj, dtype=np.float32)
        maps[key] = _block_mean(data / data.max(), resolution_mm)  # nilearn's loaders also divide by max
    gm, wm = maps["gm"], maps["wm"]
    labels = np.zeros(gm.shape, np.uint8)
    labels[(gm > 0.5) & (gm >= wm)] = 1
    labels[(wm > 0.5) & (wm > gm)] = 2
    return maps["t1"], labels


def assign_slabs(candidates: list[int], block: int, gap: int, roles=ROLES) -> dict[str, list[int]]:
    """Deal consecutive slabs of ``block`` slices to ``roles`` in turn, dropping ``gap`` slices between slabs."""
    if block < 1 or gap < 1:
        raise DatasetError(f"block={block}, gap={gap}: both must be >= 1 (gap >= 1 keeps roles from being "
                           "neighbours)")
    out = {role: [] for role in roles}
    start, turn = candidates[0], 0
    last = candidates[-1]
    while start <= last:
        role = roles[turn % len(roles)]
        out[role].extend(z for z in range(start, start + block) if z <= last)
        start += block + gap
        turn += 1
    empty = [r for r, zs in out.items() if not zs]
    if empty:
        raise DatasetError(f"block={block}, gap={gap} leave no slices for role(s) {empty}; use smaller values")
    return out


def _axial_slice(volume: np.ndarray, z: int) -> np.ndarray:
    # (x, y) RAS -> rows = anterior at the top, columns = left to right as on screen: (y, x) array order
    return np.ascontiguousarray(volume[:, :, z].T[::-1])


def _brain_box(labels: np.ndarray, margin: int = 2) -> tuple[slice, slice]:
    """The (x, y) extent of the brain over the whole volume, with ``margin`` voxels around it."""
    xs, ys = (np.flatnonzero(labels.any(axis=axes)) for axes in ((1, 2), (0, 2)))
    return (slice(max(0, xs[0] - margin), xs[-1] + 1 + margin), slice(max(0, ys[0] - margin), ys[-1] + 1 + margin))


def _cases_of_slab(t1: np.ndarray, labels: np.ndarray, zs: list, dims: int, box) -> list[tuple]:
    """(case name, its noise seed, image, label map) of one slab: 2D, each axial slice; 3D, the slab's anterior
    and posterior halves as (z, y, x) volumes."""
    if dims == 2:
        return [(f"mni_z{z:03d}", [z], _axial_slice(t1, z), _axial_slice(labels, z)) for z in zs]
    x, y = box
    middle = (y.start + y.stop) // 2
    halves = {"posterior": slice(y.start, middle), "anterior": slice(middle, y.stop)}  # RAS: y grows anterior
    return [(f"mni3d_z{zs[0]:03d}_{half}", [zs[0], index],
             np.ascontiguousarray(t1[x, part, zs[0]:zs[-1] + 1].transpose(2, 1, 0)),
             np.ascontiguousarray(labels[x, part, zs[0]:zs[-1] + 1].transpose(2, 1, 0)))
            for index, (half, part) in enumerate(halves.items())]


@dataclass(frozen=True)
class _TemplateCut:
    """The template and how it is cut into slabs: everything each role's dataset is written from."""

    t1: np.ndarray
    labels: np.ndarray
    slabs: dict          # role -> its axial slice indices (downstream: the transferal slices)
    box: tuple           # the brain's (x, y) extent, for 3D cases
    dims: int
    block: int
    gap: int
    resolution_mm: int
    seed: int

    @property
    def spacing(self) -> tuple[float, ...]:
        return (float(self.resolution_mm),) * self.dims

    def cases(self, role: str) -> list[tuple]:
        zs = self.slabs[role]
        slab_slices = [zs[i:i + self.block] for i in range(0, len(zs), self.block)] if self.dims == 3 else [zs]
        return [c for part in slab_slices for c in _cases_of_slab(self.t1, self.labels, part, self.dims, self.box)]

    def distance_to_other_roles_mm(self, role: str) -> int:
        own = "transferal" if role == "downstream" else role
        others = [z for r in ROLES if r not in (role, own) for z in self.slabs[r]]
        return min(abs(a - b) for a in self.slabs[role] for b in others) * self.resolution_mm


def _cut_template(resolution_mm: int, block: int, gap: int, min_brain_fraction: float, dims: int,
                  seed: int) -> _TemplateCut:
    t1, labels = load_mni152(resolution_mm)
    fraction = (labels > 0).mean(axis=(0, 1))
    candidates = [int(z) for z in np.flatnonzero(fraction >= min_brain_fraction)]
    slabs = assign_slabs(candidates, block, gap)
    slabs["downstream"] = slabs["transferal"]
    return _TemplateCut(t1, labels, slabs, _brain_box(labels), dims, block, gap, resolution_mm, seed)


def _write_role(cut: _TemplateCut, role: str, folder: Path, dataset_name: str, domain: DomainConfig) -> None:
    """One role's images (and labels, but for the transferal set) with its appearance, and its dataset.json."""
    # The downstream set shows exactly the transferal images: same slices, appearance and noise.
    role_code = ROLES.index("transferal" if role == "downstream" else role)
    labelled = role != "transferal"
    (folder / "imagesTr").mkdir()
    if labelled:
        (folder / "labelsTr").mkdir()
    cases = cut.cases(role)
    for case, noise_seed, image, label_map in cases:
        rng = np.random.default_rng([cut.seed, role_code, *noise_seed])
        shifted = apply_appearance(image, domain, rng, cut.spacing, mask=image > 0)
        write_image(folder / "imagesTr" / f"{case}_0000.nii.gz", shifted, cut.spacing)
        if labelled:
            write_image(folder / "labelsTr" / f"{case}.nii.gz", label_map, cut.spacing)
    what = "axial slices" if cut.dims == 2 else "anterior/posterior halves of axial slabs"
    write_dataset_json(
        folder, {"0": "T1"}, LABELS, len(cases), ".nii.gz", dataset_name=dataset_name,
        description=f"kt-nnunet demo, {role} role: {what} of the MNI ICBM152 2009a symmetric T1 "
                    "template (nilearn wheel) with 0 background / 1 grey matter / 2 white matter from "
                    "the template's probability maps",
        reference="Fonov et al., NeuroImage 2011; nilearn (BSD-3)",
        license="MNI ICBM152 2009 template: McConnell Brain Imaging Centre permissive licence",
        converted_by="kt-nnunet data demo",
        kt_nnunet={"role": role, "labelled": labelled, "builder": "kt_nnunet.data.demo",
                   "view": "axial", "dims": cut.dims, "slices": cut.slabs[role], "resolution_mm": cut.resolution_mm,
                   "block": cut.block, "gap": cut.gap,
                   "min_distance_to_other_roles_mm": cut.distance_to_other_roles_mm(role),
                   "seed": cut.seed, "domain": domain.as_dict()})


def build_demo(out: Optional[str | Path] = None, *, base_id: int = 900, name: Optional[str] = None,
               resolution_mm: Optional[int] = None, block: Optional[int] = None, gap: int = 2,
               min_brain_fraction: float = 0.05, seed: int = 0, source_domain: DomainConfig = DEMO_SOURCE_DOMAIN,
               target_domain: DomainConfig = DEMO_TARGET_DOMAIN, with_downstream: bool = False,
               force: bool = False, dims: int = 2) -> DemoDatasets:
    """Write ``Dataset{base_id}_{name}Source``, ``...{base_id+1}_{name}Transferal``, ``...{base_id+2}_{name}Test``.

    ``with_downstream`` adds ``...{base_id+3}_{name}Downstream``: the transferal images with their true labels,
    the labelled pool a few fine-tuning cases are drawn from (the downstream task's own images serve as the
    transferal set, and a few of them are annotated). ``out`` defaults to ``$nnUNet_raw``. All datasets appear
    together or not at all. ``dims=3`` writes volumes (see the module docstring); its defaults are
    ``name="MNIDemo3D"`` and slabs of 6 slices (2D: ``"MNIDemo"`` and 4 slices), both at 2 mm.
    """
    if dims not in (2, 3):
        raise DatasetError(f"dims={dims}: the demo is 2D (axial slices) or 3D (volumes)")
    name = name or ("MNIDemo" if dims == 2 else "MNIDemo3D")
    block = block or (4 if dims == 2 else 6)
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    cut = _cut_template(resolution_mm or 2, block, gap, min_brain_fraction, dims, seed)
    roles = ROLES + (("downstream",) if with_downstream else ())
    targets = {role: Path(out) / nnunet_dataset_name(base_id + i, f"{name}{role.capitalize()}")
               for i, role in enumerate(roles)}
    with contextlib.ExitStack() as stack:
        staging = {role: stack.enter_context(staged_directory(t, force=force)) for role, t in targets.items()}
        for role in roles:
            domain = source_domain if role == "source" else target_domain
            _write_role(cut, role, staging[role], targets[role].name, domain)
    return DemoDatasets(**targets)
