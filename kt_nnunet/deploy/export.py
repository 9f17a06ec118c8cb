"""``export_model``: a model folder's fold networks as ONNX or TorchScript files, plus the JSON sidecar.

The spatial axes are fixed to the plans' patch size and only the batch axis is dynamic: the sliding
window only ever feeds whole patches (images smaller than a patch are padded to it), fixed shapes let
ONNX Runtime plan memory and fold constants once, and several architectures (TransUNet's position
embeddings, DeepLabV3+'s pooling branch) are defined for the planned patch size only. ONNX goes through
``torch.onnx.export(dynamo=True)``, torch's supported exporter (the TorchScript-based one is deprecated).
Each exported network is checked against PyTorch on a seeded random batch; the largest logit difference
is stored in the sidecar.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from kt_nnunet.atomic_files import atomic_write_text
from kt_nnunet.exported.sidecar import NETWORK_SUFFIXES, SIDECAR_FORMAT, SIDECAR_KIND, network_file
from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT, load_trained_model

FORMATS = tuple(NETWORK_SUFFIXES)
CHECK_BATCH = 2  # not 1: torch.export would specialise the batch axis to a constant
ONNX_OPSET = 18


class ExportError(KtNnunetError):
    """A network cannot be exported in the asked format."""


@dataclass
class ExportResult:
    sidecar: Path
    networks: dict            # fold -> network file
    format: str
    max_abs_difference: dict  # fold -> largest |exported - PyTorch| logit on the check batch


def _export_onnx(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), str(path), dynamo=True, input_names=["image"],
                          output_names=["logits"], dynamic_shapes=({0: batch},), opset_version=ONNX_OPSET,
                          external_data=False)


def _export_torchscript(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(network, example, check_trace=False)
        torch.jit.save(traced, str(path))


def _max_difference(network: torch.nn.Module, path: Path, format: str, example: torch.Tensor) -> float:
    from kt_nnunet.exported.runtime import OnnxNetwork, load_torchscript

    threads = torch.get_num_threads()
    exported = OnnxNetwork(path, threads) if format == "onnx" else load_torchscript(path, threads)
    with torch.inference_mode():
        return float((exported(example) - network(example)).abs().max())


def export_model(model_folder: str | Path, out: Optional[str | Path] = None, *, format: str = "onnx",
                 folds: Optional[Sequence[int]] = None, checkpoint: str = DEFAULT_CHECKPOINT) -> ExportResult:
    """Export ``folds`` (default: all found) of ``model_folder``; ``out`` is the sidecar path or the first network.

    Default ``out``: ``MODEL_FOLDER/exported/network.json`` (+ ``network.onnx``, or ``network_fold<K>.onnx``
    per fold when there are several).
    """
    if format not in FORMATS:
        raise ExportError(f"export format {format!r} is not one of {', '.join(FORMATS)}")
    model = load_trained_model(model_folder, folds, checkpoint)
    if model.configuration_manager.previous_stage_name is not None:
        raise ExportError(f"{model.folder} is a cascade stage ({model.configuration}) that needs the previous "
                          "stage's segmentation; export the 3d_lowres/3d_fullres or 2d model instead")
    sidecar = Path(out).with_suffix(".json") if out is not None else Path(model.folder) / "exported" / "network.json"
    if sidecar.is_file():
        previous = json.loads(sidecar.read_text()).get("network_format")
        if previous not in (None, format):
            raise ExportError(f"{sidecar} describes a {previous} export of the same name; give this {format} "
                              "export another --out name (or delete the old export)")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    patch = [int(p) for p in model.configuration_manager.patch_size]
    generator = torch.Generator().manual_seed(0)
    example = torch.randn((CHECK_BATCH, model.num_input_channels, *patch), generator=generator)
    networks, differences = {}, {}
    for fold, network in zip(model.folds, model.load_fold_networks()):
        path = network_file(sidecar, format, fold, len(model.folds))
        try:
            (_export_onnx if format == "onnx" else _export_torchscript)(network, example, path)
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ExportError(f"{model.architecture} from {model.folder} cannot be exported to {format} "
                              f"({type(exc).__name__}: {detail}); try the other --format, or predict from the "
                              "model folder with `kt-nnunet predict --model MODEL_FOLDER`") from exc
        networks[fold] = path
        differences[fold] = _max_difference(network, path, format, example)
    description = {
        "kind": SIDECAR_KIND, "format": SIDECAR_FORMAT, "network_format": format,
        "networks": {str(fold): path.name for fold, path in networks.items()},
        "input": {"name": "image", "shape": ["batch", model.num_input_channels, *patch], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", model.label_manager.num_segmentation_heads, *patch]},
        "spatial_axes": "fixed to the plans' patch size; only the batch axis is dynamic",
        "onnx_opset": ONNX_OPSET if format == "onnx" else None,
        "max_abs_logit_difference": {str(f): d for f, d in differences.items()},
        "torch_version": torch.__version__,
        "configuration": model.configuration, "folds": list(model.folds), "trainer_name": model.trainer_name,
        "inference_allowed_mirroring_axes": (list(model.mirroring_axes) if model.mirroring_axes is not None
                                             else None),
        "architecture": model.architecture, "labels": model.labels,
        "source": model.provenance(),
        "plans": model.plans, "dataset_json": model.dataset_json,
    }
    atomic_write_text(sidecar, json.dumps(description, indent=1))
    sidecar.chmod(0o644)  # mkstemp's 0600 would hide it from the users the network files are readable by
    return ExportResult(sidecar, networks, format, differences)
