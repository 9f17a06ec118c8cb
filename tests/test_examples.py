"""The example configs parse, and examples/demo.yaml is the experiment `kt-nnunet demo` runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kt_nnunet.experiment.config import parse_config
from kt_nnunet.experiment.demo import demo_config_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_demo_is_the_packaged_demo():
    assert (EXAMPLES / "demo.yaml").read_text() == demo_config_text()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_configs_parse(name, tmp_path):
    config = parse_config(yaml.safe_load((EXAMPLES / name).read_text()), source=name, base_dir=tmp_path)
    steps = config.steps()
    assert steps[-1].name == "report" and any(s.name.startswith("train_student") for s in steps)
