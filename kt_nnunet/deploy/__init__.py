"""Deploying a trained model: lean prediction (``predict``) and ONNX / TorchScript export (``export_model``).

See docs/deploying.md. Importing this package imports neither torch nor nnU-Net.
"""
from __future__ import annotations

__all__ = ["export_model", "predict", "load_predictor"]


def __getattr__(name):
    if name == "export_model":
        from kt_nnunet.deploy.export import export_model

        return export_model
    if name in ("predict", "load_predictor"):
        from kt_nnunet.deploy import predict as module

        return getattr(module, name)
    raise AttributeError(name)
