"""The JSON beside an exported network: everything needed to predict without the model folder.

Two kinds of sidecar describe a network file (ONNX or TorchScript, ``(B, C, *patch) -> (B, K, *patch)`` logits):

* ``"kind": "kt-nnunet-export"``, written by ``kt-nnunet export``: the model folder's whole nnU-Net plans and
  dataset.json, so preprocessing and the mapping back are exactly the model folder's;
* ``"kind": "kt-nnunet-network"``, written by hand for a network from anywhere else (a collaborator, a
  vendor): channels and their normalisation, spacing, patch size and labels (``docs/teachers.md``). It is
  turned into a one-configuration nnU-Net plans dict here, so both kinds then run through the same nnU-Net
  preprocessing, sliding window and export code.

``format`` is the version of a layout; readers refuse versions they do not know. Network files are
stored relative to the sidecar, so an export folder can be moved or copied as a whole.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from kt_nnunet.errors import KtNnunetError

SIDECAR_FORMAT = 1
SIDECAR_KIND = "kt-nnunet-export"
NETWORK_SIDECAR_KIND = "kt-nnunet-network"
SIDECAR_KINDS = (SIDECAR_KIND, NETWORK_SIDECAR_KIND)
NETWORK_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
# The configuration name a hand-written description's plans get (it names nothing in nnU-Net's folders).
DESCRIBED_CONFIGURATION = "exported"


class ExportedModelError(KtNnunetError):
    """An exported model (network file or its JSON sidecar) is missing, unreadable or from another version."""


def sidecar_of(path: str | Path) -> Path:
    """The sidecar for ``--model PATH``: the JSON itself, ``NAME.json`` beside ``NAME[_fold<K>].onnx``, a folder's."""
    path = Path(path)
    if path.suffix == ".json":
        return path
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.json")) if is_sidecar(p)]
        if len(found) != 1:
            raise ExportedModelError(f"{path} holds {len(found)} kt-nnunet export sidecars; pass the .json or the "
                                     "network file itself")
        return found[0]
    own = path.with_suffix(".json")
    fold = re.fullmatch(r"(?P<stem>.+)_fold\d+", path.stem)
    if not own.is_file() and fold:  # NAME_fold<K>.onnx belongs to NAME.json
        return path.with_name(fold["stem"] + ".json")
    return own


def is_sidecar(path: Path) -> bool:
    """Whether ``path`` is a JSON file of one of the sidecar kinds (readable or not otherwise)."""
    try:
        return json.loads(path.read_text()).get("kind") in SIDECAR_KINDS
    except (OSError, ValueError, AttributeError):
        return False


def network_file(sidecar: Path, format: str, fold: int, num_folds: int) -> Path:
    """``NAME.onnx`` for one fold, ``NAME_fold<K>.onnx`` for each of several."""
    stem = sidecar.with_suffix("").name
    suffix = NETWORK_SUFFIXES[format]
    return sidecar.with_name(f"{stem}{suffix}" if num_folds == 1 else f"{stem}_fold{fold}{suffix}")


def read_sidecar(path: str | Path) -> dict:
    """The sidecar of ``path`` (see :func:`sidecar_of`), in the export layout whichever kind it is, with
    ``_path`` set to the sidecar file."""
    path = sidecar_of(path)
    if not path.is_file():
        raise ExportedModelError(f"{path} is missing: an exported network needs the JSON that `kt-nnunet export` "
                                 "writes beside it (same name, .json), or a hand-written one describing it "
                                 "(docs/teachers.md); export the model folder again or write it")
    try:
        sidecar = json.loads(path.read_text())
    except ValueError as exc:
        raise ExportedModelError(f"{path} is not valid JSON ({exc}); export the model folder again") from exc
    if not isinstance(sidecar, dict) or sidecar.get("kind") not in SIDECAR_KINDS:
        raise ExportedModelError(f"{path} is not a kt-nnunet sidecar (no \"kind\": \"{SIDECAR_KIND}\" or "
                                 f"\"{NETWORK_SIDECAR_KIND}\"; see docs/teachers.md)")
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ExportedModelError(f"{path} has sidecar format {sidecar.get('format')!r}; this kt-nnunet reads format "
                                 f"{SIDECAR_FORMAT}. Export the model folder again with this version")
    if sidecar["kind"] == NETWORK_SIDECAR_KIND:
        sidecar = described_network(sidecar, path)
    for fold, name in sidecar["networks"].items():
        if not (path.parent / name).is_file():
            raise ExportedModelError(f"{path.parent / name} (fold {fold}) is missing; copy the whole export folder "
                                     "or export the model folder again")
    sidecar["_path"] = str(path)
    return sidecar


_NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization",
                   "RGBTo01Normalization")
_CT_STATISTICS = ("mean", "std", "percentile_00_5", "percentile_99_5")


# nnU-Net's default resampling (what its planner writes into a configuration), for a network planned elsewhere.
_DEFAULT_RESAMPLING = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}}


def described_network(description: dict, path: Path) -> dict:
    """A hand-written ``kt-nnunet-network`` description as the export layout: a one-configuration plans dict
    with nnU-Net's default resampling, so nnU-Net's preprocessing and export code run on it unchanged."""
    missing = [k for k in ("channels", "spacing", "patch_size", "labels") if k not in description]
    if missing:
        raise _refusal(path, f"missing {', '.join(missing)}")
    networks, network_format = _described_network_files(description, path)
    channels = description["channels"]
    if not isinstance(channels, list) or not channels:
        raise _refusal(path, '"channels" must be a list with one {"name": ..., "normalization": ...} per input '
                             'channel')
    patch = [int(p) for p in description["patch_size"]]
    spacing = [float(s) for s in description["spacing"]]
    if len(patch) not in (2, 3) or len(spacing) != len(patch):
        raise _refusal(path, f"patch_size {patch} and spacing {spacing} must both have 2 (2D network) or 3 (3D) "
                             "entries")
    schemes, statistics = _described_normalization(channels, path)
    labels = {str(k): int(v) for k, v in description["labels"].items()}
    configuration = {
        "data_identifier": DESCRIBED_CONFIGURATION, "preprocessor_name": "DefaultPreprocessor", "batch_size": 1,
        "patch_size": patch, "median_image_size_in_voxels": patch, "spacing": spacing,
        "normalization_schemes": schemes, "use_mask_for_norm": [False] * len(schemes),
        **copy.deepcopy(_DEFAULT_RESAMPLING),
        # Never built: the network is the exported file. nnU-Net's plans reader still wants the key.
        "architecture": {"network_class_name": f"exported {network_format} network", "arch_kwargs": {},
                         "_kw_requires_import": []},
        "batch_dice": False}
    dataset_json = {"channel_names": {str(i): c.get("name", f"channel{i}") for i, c in enumerate(channels)},
                    "labels": labels, "numTraining": 0, "file_ending": description.get("file_ending", ".nii.gz")}
    mirroring = description.get("mirroring_axes", list(range(len(patch))))
    return {"kind": NETWORK_SIDECAR_KIND, "format": SIDECAR_FORMAT, "network_format": network_format,
            "networks": networks, "folds": [int(f) for f in networks], "configuration": DESCRIBED_CONFIGURATION,
            "trainer_name": "", "inference_allowed_mirroring_axes": list(mirroring) if mirroring is not None else None,
            "architecture": description.get("architecture", f"exported {network_format} network"),
            "labels": labels, "source": {"described_by": str(path)},
            "plans": _described_plans(description, path, configuration, statistics), "dataset_json": dataset_json}


def _refusal(path: Path, problem: str) -> ExportedModelError:
    return ExportedModelError(f"{path}: {problem} (see docs/teachers.md for the sidecar of an exported network)")


def _described_network_files(description: dict, path: Path) -> tuple[dict, str]:
    """``({fold: file}, network format)`` of a description: ``networks`` or one ``network``, the format named or
    told by the files' suffix."""
    if "networks" in description:
        networks = {str(fold): str(name) for fold, name in dict(description["networks"]).items()}
    elif "network" in description:
        networks = {"0": str(description["network"])}
    else:
        raise _refusal(path, 'no "network" (the file name, relative to the sidecar) nor "networks" ({fold: file})')
    formats = {_format_of(name) for name in networks.values()}
    network_format = description.get("network_format") or (formats.pop() if len(formats) == 1 else None)
    if network_format not in NETWORK_SUFFIXES:
        raise _refusal(path, f"cannot tell the network format of {sorted(networks.values())}; name the files .onnx "
                             f"or .pt, or set \"network_format\" to one of {', '.join(NETWORK_SUFFIXES)}")
    return networks, network_format


def _described_normalization(channels: list, path: Path) -> tuple[list, dict]:
    """Each channel's normalisation scheme and its intensity statistics (keyed by channel index, as nnU-Net's
    plans key them)."""
    schemes, statistics = [], {}
    for index, channel in enumerate(channels):
        scheme = channel.get("normalization", "ZScoreNormalization")
        if scheme not in _NORMALIZATIONS:
            raise _refusal(path, f"channel {index} normalization {scheme!r} is not one of {', '.join(_NORMALIZATIONS)}")
        schemes.append(scheme)
        stats = channel.get("intensity") or {}
        if scheme == "CTNormalization" and any(k not in stats for k in _CT_STATISTICS):
            raise _refusal(path, f"channel {index} uses CTNormalization, which needs \"intensity\" with "
                                 f"{', '.join(_CT_STATISTICS)} (the training set's foreground statistics)")
        statistics[str(index)] = {k: float(v) for k, v in stats.items()}
    return schemes, statistics


def _described_plans(description: dict, path: Path, configuration: dict, statistics: dict) -> dict:
    """nnU-Net plans with the one configuration; a 2D network's median spacing and shape get the dummy first axis
    nnU-Net's 2D plans have."""
    dim = len(configuration["patch_size"])
    spacing, patch = configuration["spacing"], configuration["patch_size"]
    transpose = list(range(3))
    return {"dataset_name": description.get("name", path.stem), "plans_name": "kt-nnunet-network",
            "original_median_spacing_after_transp": ([999.0] if dim == 2 else []) + spacing,
            "original_median_shape_after_transp": ([1] if dim == 2 else []) + patch,
            "image_reader_writer": description.get("image_reader_writer", "SimpleITKIO"),
            "transpose_forward": transpose, "transpose_backward": transpose,
            "experiment_planner_used": "kt-nnunet network sidecar", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": statistics,
            "configurations": {DESCRIBED_CONFIGURATION: configuration}}


def _format_of(name: str) -> str | None:
    suffix = Path(name).suffix
    return {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}.get(suffix)
