"""The example configs parse, and examples/demo.yaml is the experiment `kt-nnunet demo` runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from kt_nnunet.experiment.config import parse_config
from kt_nnunet.experiment.demo import demo_config_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_demo_is_the_packaged_demo():
    assert (EXAMPLES / "demo.yaml").read_text() == demo_config_text()


def _spec(entry) -> dict:
    """A teacher or student entry of the YAML as a dict (a bare string is an architecture name)."""
    return {"architecture": entry} if isinstance(entry, str) else entry


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_configs_parse(name, tmp_path):
    """Each example parses into what its YAML says, and plans one step per model, label set and evaluation its
    teachers x students x modes x repeats ask for (counted from the YAML, not from the parser)."""
    data = yaml.safe_load((EXAMPLES / name).read_text())
    config = parse_config(data, source=name, base_dir=tmp_path)
    teachers, students = [_spec(t) for t in data["teachers"]], [_spec(s) for s in data["students"]]
    assert config.name == data["name"] and config.configuration == data["configuration"]
    assert [s.dataset_id for s in config.sources] == [data["source"]]
    assert config.transferal.spec == data["transferal"]
    assert config.test.dataset.spec == (data["test"]["dataset"] if isinstance(data["test"], dict) else data["test"])
    assert [(t.architecture, t.arch_kwargs) for t in config.teachers] == \
        [(t["architecture"], t.get("arch_kwargs", {})) for t in teachers]
    assert [(s.name, s.architecture) for s in config.students] == \
        [(s.get("name", s["architecture"]), s["architecture"]) for s in students]
    assert config.modes == tuple(data["modes"]) and config.fusion.method == data["fusion"]["method"]

    modes, repeats = set(data["modes"]), data.get("repeats", 1)
    label_sets = (len(teachers) if "single_teacher" in modes else 0) + ("multi_teacher" in modes)
    finetune_from = data.get("finetune", {}).get("from", "multi_teacher" if "multi_teacher" in modes
                                                 else "single_teacher")
    finetunes = len(students) * (1 if finetune_from == "multi_teacher" else len(teachers)) * ("kt_finetune" in modes)
    baselines = len(students) * ("finetune_only" in modes)
    expected = {"TrainTeacher": len(teachers), "LabelTransferal": label_sets,
                "TrainStudent": len(students) * label_sets, "Finetune": finetunes, "TrainBaseline": baselines,
                "MakeFinetuneSubset": int(bool(finetunes or baselines)),
                "Evaluate": len(teachers) + len(students) * label_sets + finetunes + baselines}
    expected = {kind: count * repeats for kind, count in expected.items() if count}
    steps = config.steps()
    planned = Counter(type(s).__name__ for s in steps)
    assert {kind: planned[kind] for kind in expected} == expected
    assert set(planned) - set(expected) == {"TimeInference", "Report"} and steps[-1].name == "report"
