"""An exported network (ONNX or TorchScript file plus its sidecar) loaded as a ``TrainedModel`` with callables.

The sidecar's plans and dataset.json (the model folder's own, or the ones a hand-written description becomes)
make a ``TrainedModel`` without weights; the networks are ONNX Runtime sessions or TorchScript modules. nnU-Net's
preprocessing, sliding window, fold averaging and export then run on it exactly as on a model folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from kt_nnunet.exported.sidecar import ExportedModelError, read_sidecar
from kt_nnunet.nnunet.model_folder import TrainedModel


@dataclass
class ExportedModel:
    model: TrainedModel          # plans and dataset.json from the sidecar, no state dicts
    networks: list               # one callable per chosen fold
    backend: str                 # "onnx" or "torchscript"
    sidecar: Path
    files: dict = field(default_factory=dict)  # fold -> network file


def load_exported_model(path: str | Path, folds: Optional[Sequence[int]] = None, threads: int = 1,
                        device: torch.device = torch.device("cpu")) -> ExportedModel:
    """The network file, sidecar or export folder ``path``, with ``folds`` (default: every fold it holds)."""
    from kt_nnunet.exported.runtime import OnnxNetwork, load_torchscript

    sidecar = read_sidecar(path)
    base = Path(sidecar["_path"]).parent
    chosen = [str(f) for f in (folds if folds is not None else sidecar["folds"])]
    missing = [f for f in chosen if f not in sidecar["networks"]]
    if missing:
        raise ExportedModelError(f"{sidecar['_path']} holds folds {sidecar['folds']}, not fold {missing[0]}; "
                                 "export that fold or choose another with --folds")
    backend = sidecar["network_format"]
    if backend != "torchscript" and device.type != "cpu":
        raise ExportedModelError(f"{sidecar['_path']}: ONNX models run on the CPU here; use --device cpu or "
                                 "predict from the model folder")
    load = OnnxNetwork if backend == "onnx" else load_torchscript
    files = {int(f): base / sidecar["networks"][f] for f in chosen}
    networks = [load(file, threads) for file in files.values()]
    mirroring = sidecar["inference_allowed_mirroring_axes"]
    model = TrainedModel(base, sidecar["plans"], sidecar["dataset_json"], sidecar["configuration"],
                         tuple(files), sidecar["source"].get("checkpoint", ""), sidecar["trainer_name"],
                         tuple(mirroring) if mirroring is not None else None, [])
    return ExportedModel(model, networks, backend, Path(sidecar["_path"]), files)
