"""Exported networks as callables for the lean predictor: ONNX Runtime sessions and TorchScript modules.

Both take and return torch tensors ``(B, C, *patch) -> (B, K, *patch)`` so that nnU-Net's sliding window
and mirroring run on them unchanged. ``onnxruntime`` is imported only when an ONNX model is loaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kt_nnunet.errors import KtNnunetError


class RuntimeMissingError(KtNnunetError):
    """A back end that an exported model needs is not installed."""


class OnnxNetwork:
    """One ONNX Runtime session on the CPU, called like the torch network it was exported from."""

    def __init__(self, path: str | Path, threads: int):
        try:
            import onnxruntime
        except ImportError as exc:
            raise RuntimeMissingError(f"{path} needs onnxruntime; install it with `pip install onnxruntime`") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1  # one graph at a time; parallelism is inside the convolutions
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    # nnU-Net's predictor moves and switches the network to eval mode before each sliding window.
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self


def load_torchscript(path: str | Path, threads: int) -> torch.nn.Module:
    """A TorchScript archive runs its serialised graph, not pickled Python objects (no ``torch.load``)."""
    import warnings

    torch.set_num_threads(int(threads))
    with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit; exports made with it still load
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()
