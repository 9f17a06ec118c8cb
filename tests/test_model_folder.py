"""plans.json is code (nnU-Net locates and calls whatever it names): plans from others that name anything but a
registered architecture, nnU-Net's networks or torch.nn classes are refused wherever a network is built from them
(labelling, loading a model folder, the trainers); the plans of real architectures still build."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from budget_trainers import DATASET, PLANS_NAME, budget_trainer  # noqa: F401  (fixture)
from click.testing import CliRunner
from labelling_teachers import make_model_folder, nnunet_plans, transferal, with_architecture  # noqa: F401  (fixture)


def _hub_teacher(root: Path, marker: Path) -> Path:
    """A model folder whose plans name ``torch.hub.load`` on a local repo whose hubconf.py writes ``marker``."""
    plans = nnunet_plans()
    folder = make_model_folder(root / "nnUNetTrainer__evil__2d", plans)
    repo = root / "repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef net(**kwargs):\n    raise SystemExit\n")
    plans["configurations"]["2d"]["architecture"] = {
        "network_class_name": "torch.hub.load",
        "arch_kwargs": {"repo_or_dir": str(repo), "model": "net", "source": "local", "trust_repo": True},
        "_kw_requires_import": []}
    (folder / "plans.json").write_text(json.dumps(plans))
    return folder


def test_plans_naming_torch_hub_load_are_refused_by_label(nnunet_env, transferal, tmp_path):  # noqa: F811
    """plans.json is code: nnU-Net pydoc.locates and calls whatever network_class_name names."""
    from kt_nnunet.cli import main

    marker = tmp_path / "pwned"
    teacher = _hub_teacher(tmp_path, marker)
    result = CliRunner().invoke(main, ["label", "--teacher", str(teacher), "--images", str(transferal), "--out",
                                       str(tmp_path / "Dataset830_Evil"), "--no-tta", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "network_class_name" in result.output and "torch.hub.load" in result.output
    assert str(teacher / "plans.json") in result.output.replace("\n", "")
    assert not marker.exists()
    assert not (tmp_path / "Dataset830_Evil").exists()


@pytest.mark.parametrize("key,value", [
    ("nonlin", "torch.hub.load"),
    ("nonlin", "torch.nn.modules.module.torch.hub.load"),  # under torch.nn by name, not a torch.nn class
    ("conv_op", "os.system"),
])
def test_kw_requires_import_outside_torch_nn_is_refused(tmp_path, key, value):
    """``_kw_requires_import`` entries are pydoc.located too; only torch.nn classes are accepted."""
    from kt_nnunet.nnunet.model_folder import UnsafePlansError, load_trained_model

    folder = make_model_folder(tmp_path / "teacher", nnunet_plans())
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"][key] = value
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(UnsafePlansError, match=rf"plans\.json.*arch_kwargs\.{key}.*{value.replace('.', '.')}"):
        load_trained_model(folder).build_network()


def test_a_trainer_refuses_plans_naming_other_code(budget_trainer, nnunet_env):
    """The trainers build the network from plans on disk too (fine-tuning copies a student's plans)."""
    from kt_nnunet.nnunet.model_folder import UnsafePlansError

    path = nnunet_env["nnUNet_preprocessed"] / DATASET / f"{PLANS_NAME}.json"
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "builtins.exec"
    path.write_text(json.dumps(plans))
    with pytest.raises(UnsafePlansError, match=r"ktPlans_light_unet\.json.*network_class_name 'builtins\.exec'"):
        budget_trainer().initialize()


def test_plans_of_registered_and_nnunet_architectures_still_build(tmp_path):
    """No false alarm: kt-nnunet's own, a plugin's and nnU-Net's PlainConvUNet plans still build."""
    from kt_nnunet.nnunet.model_folder import load_trained_model

    for arch in ("unet", "segresnet"):
        folder = make_model_folder(tmp_path / arch, with_architecture(nnunet_plans(), arch))
        assert isinstance(load_trained_model(folder).build_network(), torch.nn.Module)
    stock = make_model_folder(tmp_path / "stock", nnunet_plans())
    assert type(load_trained_model(stock).build_network()).__name__ == "PlainConvUNet"
