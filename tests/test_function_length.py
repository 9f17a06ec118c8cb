"""No function in ``kt_nnunet/`` is longer than 60 lines (``def`` to its last line): a longer one does several
jobs, and its pieces deserve names. There is no allow-list; a long declarative table belongs in a module-level
constant, not in a function body."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kt_nnunet"
MAX_LINES = 60


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_is_longer_than_60_lines():
    found = [entry for path in sorted(PACKAGE.rglob("*.py")) for entry in long_functions(path)]
    assert not found, f"split these into named pieces (at most {MAX_LINES} lines each):\n" + "\n".join(found)


def test_the_check_finds_a_long_function(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("class A:\n    def long(self):\n" + "        x = 1\n" * MAX_LINES
                       + "def short():\n    return 1\n")
    assert [entry.split()[1] for entry in long_functions(planted)] == ["long"]
