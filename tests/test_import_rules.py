"""The package's layering, read from the imports themselves (docs/architecture.md states these rules; this
test is their single source).

* Layers, earliest first: the base (errors, plugins, registry, architectures and other leaf modules), the
  nnU-Net adapter (``kt_nnunet/nnunet/``), then ``data`` and ``teachers`` (the one teacher concept every
  stage shares), then the stages ``labelling`` and ``evaluation``, then ``training``, then ``experiment``,
  ``deploy`` and ``api`` (the public functions over every stage), then ``cli``. A module imports only from its own layer or earlier ones,
  at module level or inside a function alike. The one exception is ``nnunet/ext_trainers/``, the folder
  that ``nnUNet_extTrainer`` points at, which re-exports the trainers by definition.
* nnU-Net's family (``nnunetv2``, ``batchgeneratorsv2``, ``batchgenerators``, ``acvl_utils``,
  ``dynamic_network_architectures``) is imported only inside ``kt_nnunet/nnunet/``, except for two seams:
  trainer modules in ``kt_nnunet/training/`` subclass ``nnUNetTrainer`` and use its loss and data classes
  (``nnunetv2.training.*``), and ``kt_nnunet/architectures/`` registers nnU-Net's own U-Nets from their network
  classes (``dynamic_network_architectures.architectures.*``).
* Nothing outside ``kt_nnunet/cli/`` imports ``cli``; ``kt_nnunet/__init__.py`` (the lazy public facade)
  may name any layer but ``cli``.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kt_nnunet"

LAYERS = (
    {"errors", "checksums", "atomic_files", "progress", "interruption", "devices", "versions", "lazy_exports",
     "__version__", "plugins", "registry", "architectures"},
    {"nnunet"},
    {"data", "exported", "teachers"},
    {"labelling", "evaluation"},
    {"training"},
    {"experiment", "deploy", "api"},
    {"cli", "testing"},
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}
REEXPORT_FOLDERS = ("nnunet/ext_trainers/",)
# nnU-Net's family: what a new nnU-Net minor version may change under us.
NNUNET_FAMILY = ("nnunetv2", "batchgeneratorsv2", "batchgenerators", "acvl_utils", "dynamic_network_architectures")
# Outside the adapter, only these seams: trainers subclass nnUNetTrainer and use its loss and data classes, and
# nnU-Net's own U-Nets are registered as architectures from their network classes.
FAMILY_ALLOWED = {"training": ("nnunetv2.training.",),
                  "architectures": ("dynamic_network_architectures.architectures.",)}


def _part(module: str) -> str:
    """``kt_nnunet.labelling.api`` -> ``labelling``; ``kt_nnunet.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "kt_nnunet":  # from kt_nnunet import labelling, ...
                for alias in node.names:
                    yield node.lineno, f"kt_nnunet.{alias.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the rules read absolute ones")


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        yield path, rel, (rel.split("/")[0] if "/" in rel else rel[:-len(".py")])


def test_every_package_module_is_in_a_layer():
    unplaced = sorted({own for _, _, own in _sources() if own not in LAYER_OF and own != "__init__"})
    assert not unplaced, f"put {unplaced} into a layer of LAYERS (and into docs/architecture.md)"


def test_imports_follow_the_layers():
    broken = []
    for path, rel, own in _sources():
        if own == "__init__" or rel.startswith(REEXPORT_FOLDERS):
            continue
        for line, module in _imports(path):
            if not module.startswith("kt_nnunet."):
                continue
            target = _part(module)
            if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[own]:
                broken.append(f"kt_nnunet/{rel}:{line} ({own}) imports {module} ({target}, a later layer)")
    assert not broken, "\n".join(broken)


def family_imports_outside_the_adapter(sources) -> list[str]:
    broken = []
    for path, rel, own in sources:
        if own == "nnunet":
            continue
        allowed = FAMILY_ALLOWED.get(own, ())
        for line, module in _imports(path):
            if module.split(".")[0] in NNUNET_FAMILY and not module.startswith(allowed):
                broken.append(f"kt_nnunet/{rel}:{line} imports {module}")
    return broken


def test_nnunets_family_is_imported_only_by_the_adapter_and_the_two_seams():
    broken = family_imports_outside_the_adapter(_sources())
    assert not broken, "go through kt_nnunet/nnunet/ instead:\n" + "\n".join(broken)


def test_only_cli_imports_cli():
    broken = [f"kt_nnunet/{rel}:{line} imports {module}"
              for path, rel, own in _sources() if own != "cli"
              for line, module in _imports(path) if module == "kt_nnunet.cli" or module.startswith("kt_nnunet.cli.")]
    assert not broken, "\n".join(broken)


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks themselves: a planted later-layer import and a planted nnunetv2 import are found."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from kt_nnunet.experiment.runner import run_experiment\n"
                       "from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor\n")
    found = list(_imports(planted))
    assert (2, "kt_nnunet.experiment.runner") in found and (3, "nnunetv2.inference.predict_from_raw_data") in found
    assert LAYER_OF[_part("kt_nnunet.experiment.runner")] > LAYER_OF["data"]
    augmenting = tmp_path / "augmenting.py"
    augmenting.write_text("from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform\n"
                          "import acvl_utils\nfrom nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss\n")
    assert family_imports_outside_the_adapter([(augmenting, "training/augmenting.py", "training")]) == [
        "kt_nnunet/training/augmenting.py:1 imports batchgeneratorsv2.transforms.spatial.spatial",
        "kt_nnunet/training/augmenting.py:2 imports acvl_utils"]


DOC = PACKAGE.parent / "docs" / "architecture.md"
DOC_BEGIN, DOC_END = "<!-- import-layers: generated by tests/test_import_rules.py -->", "<!-- /import-layers -->"


def layers_table() -> str:
    """docs/architecture.md's table of who may import what, rendered from ``LAYERS`` and ``FAMILY_ALLOWED``."""
    rows = ["| layer | packages and modules (each imports only from its own layer or an earlier one) | "
            "nnU-Net's family it may import |", "| --- | --- | --- |"]
    for index, names in enumerate(LAYERS):
        family = "all of it" if "nnunet" in names else "; ".join(
            f"`{name}`: " + ", ".join(f"`{prefix}*`" for prefix in FAMILY_ALLOWED[name])
            for name in sorted(names) if name in FAMILY_ALLOWED) or "none"
        rows.append(f"| {index} | {', '.join(f'`{name}`' for name in sorted(names))} | {family} |")
    return "\n".join(rows)


def test_the_architecture_doc_states_these_rules():
    text = DOC.read_text()
    assert DOC_BEGIN in text and DOC_END in text, f"{DOC} needs the markers {DOC_BEGIN} ... {DOC_END}"
    documented = text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].strip()
    assert documented == layers_table(), (f"{DOC}'s import table is out of date; replace the lines between its "
                                          f"markers with:\n{layers_table()}")
