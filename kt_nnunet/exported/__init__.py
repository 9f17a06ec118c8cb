"""kt-nnunet's format for a network exported from its model folder (``kt-nnunet export``) or brought from
elsewhere: ``sidecar.py`` (the versioned JSON beside the network file: plans, configuration, dataset.json and
folds, or a hand-written description turned into one-configuration plans), ``runtime.py`` (ONNX Runtime and
TorchScript networks as callables; onnxruntime imported lazily) and ``model.py`` (an exported network as a
``TrainedModel`` plus its fold callables, for prediction and for teachers). Teachers and deployment both read it,
so it sits below both; nothing here imports nnU-Net.
"""
