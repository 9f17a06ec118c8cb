"""Deploying a trained model: lean prediction and ONNX / TorchScript export (see docs/deploying.md).

``from kt_nnunet.deploy.predict import predict, load_predictor`` and
``from kt_nnunet.deploy.export import export_model``. Importing this package imports neither torch nor
nnU-Net. (``predict`` is not re-exported here: the name would collide with the ``predict`` submodule.)
"""
from __future__ import annotations

__all__ = ["export_model", "load_predictor"]


def __getattr__(name):
    if name == "export_model":
        from kt_nnunet.deploy.export import export_model

        return export_model
    if name == "load_predictor":
        from kt_nnunet.deploy.predict import load_predictor

        return load_predictor
    raise AttributeError(name)
