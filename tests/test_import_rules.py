"""The package's layering, read from the imports themselves (docs/architecture.md states these rules; this
test is their single source).

* Layers, earliest first: the base (errors, plugins, registry, architectures and other leaf modules), the
  nnU-Net adapter (``kt_nnunet/nnunet/``), then ``data`` and ``teachers`` (the one teacher concept every
  stage shares), then the stages ``labelling`` and ``evaluation``, then ``training``, then ``experiment``,
  ``deploy`` and ``api`` (the public functions over every stage), then ``cli``. A module imports only from its own layer or earlier ones,
  at module level or inside a function alike. The one exception is ``nnunet/ext_trainers/``, the folder
  that ``nnUNet_extTrainer`` points at, which re-exports the trainers by definition.
* nnunetv2 is imported only inside ``kt_nnunet/nnunet/``, except that trainer modules in
  ``kt_nnunet/training/`` subclass ``nnUNetTrainer`` and use its loss and data helpers
  (``nnunetv2.training.*``).
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
    {"data", "teachers"},
    {"labelling", "evaluation"},
    {"training"},
    {"experiment", "deploy", "api"},
    {"cli", "testing"},
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}
REEXPORT_FOLDERS = ("nnunet/ext_trainers/",)
NNUNETV2_ALLOWED = {"training": ("nnunetv2.training.",)}


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


def test_nnunetv2_is_imported_only_by_the_adapter_and_trainers():
    broken = []
    for path, rel, own in _sources():
        if own == "nnunet":
            continue
        allowed = NNUNETV2_ALLOWED.get(own, ())
        for line, module in _imports(path):
            if module.split(".")[0] == "nnunetv2" and not module.startswith(allowed):
                broken.append(f"kt_nnunet/{rel}:{line} imports {module}")
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
