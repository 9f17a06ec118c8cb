"""The fusion methods' names, importable without torch (the CLI's ``--fusion`` choices)."""

FUSION_METHODS = ("mean", "weighted", "majority", "staple", "reliability")
