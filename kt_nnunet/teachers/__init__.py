"""Teachers: the one teacher concept every stage uses (labelling, online and offline transfer, fine-tuning,
evaluation).

- ``spec.py``: ``TeacherSpec`` and its ``[KIND:]PATH[:folds]`` syntax (the text only);
- ``base.py``: ``Teacher``, what every kind gives labelling;
- ``kinds.py``: ``TeacherKind``, the built-in and plugin kinds, which kind a spec is, a teacher opened by its kind;
- ``network_teachers.py`` / ``predictions.py``: the built-in kinds' teachers;
- ``loading.py``: safe loading of model folders (``weights_only=True``, nnU-Net's allow-list), changed checkpoints
  refused;
- ``compatibility.py``: whether teachers fit each other and a student's data, one ``TeacherMismatchError``;
- ``labels.py``: the output label set, label maps between teachers;
- ``fusion.py`` / ``methods.py``: the fusion registry, each method as a streaming accumulator (labelling)
  and in batched form (online training);
- ``ensemble.py``: frozen teacher networks labelling training batches;
- ``errors.py``.
"""
