"""The conformance kit (``kt_nnunet.testing``) and `kt-nnunet plan`'s contract check catch each mistake a plugin
author makes, in one message naming the plugin, the architecture and the broken rule; a correct third-party
network passes. The networks come from a fake plugin package installed through its entry point."""
from __future__ import annotations

import textwrap

import pytest
import torch
from click.testing import CliRunner

from fake_plugins import DEFECTS_PLUGIN, NO_KWARGS_PLUGIN
from kt_nnunet.cli import main
from kt_nnunet.errors import KtNnunetError, KtNnunetWarning
from kt_nnunet.registry import ArchitectureContractError
from kt_nnunet.testing import GEOMETRIES, check_architecture, check_forward_backward, check_plan_contract
from kt_nnunet.testing.checks import CHANNELS

pytest_plugins = ["pytester"]

PREFIX = ("architecture '{name}' from plugin '{plugin}' (kt-nnunet-{plugin} 1.0) breaks nnU-Net's network contract "
          "(patch [32, 32], strides [[1, 1], [2, 2], [2, 2], [2, 2]], 2 input channel(s), 3 classes): ")
# The mistake, and what the message must say about the rule, for the 2D geometry of the kit (patch 32x32, 4 stages).
DEFECTS = {
    "wrong_channels_net": ["deep-supervision output 0 has 2 channels, the plans ask for 3"],
    "plain_fcn": ["does not support deep supervision: PlainFCN has no .decoder attribute"],
    "fixed_flag_net": ["with deep supervision off, forward() returned a list of 3, not one logits tensor",
                       "must read at run time"],
    "one_output_net": ["with deep supervision on, forward() returned 1 outputs; the plans' 4 stages ask for 3"],
    "half_resolution_net": ["deep-supervision output 0 has spatial shape [16, 16], the patch is [32, 32]"],
    "heads_only_when_supervised_net": ["the state_dict differs with deep supervision on and off (only with it on: "
                                       "decoder.heads.1.bias", "create every head always"],
    "strict_net": ["the constructor failed: TypeError: ", "unexpected keyword argument",
                   "accept every name you use and ignore the others with **kwargs"],
}


@pytest.fixture
def defects(fake_entry_points):
    fake_entry_points("defects", source=DEFECTS_PLUGIN)
    fake_entry_points("strict", source=NO_KWARGS_PLUGIN)


def plugin_of(name):
    return "strict" if name == "strict_net" else "defects"


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_plan_contract_check_names_plugin_architecture_and_rule(defects, name):
    with pytest.raises(ArchitectureContractError) as info:
        check_plan_contract(name, GEOMETRIES["2d"])
    message = str(info.value)
    assert isinstance(info.value, KtNnunetError) and "\n" not in message
    prefix = PREFIX.format(name=name, plugin=plugin_of(name))
    assert message.startswith(prefix) and all(rule in message[len(prefix):] for rule in DEFECTS[name]), message


def test_a_correct_third_party_network_passes_every_in_process_check(defects):
    check_architecture("good_net")


def test_an_error_only_the_meta_device_makes_is_checked_again_on_the_cpu(defects):
    from kt_nnunet.architectures.contract import NetworkCodeError, _forward
    from kt_nnunet.registry import get_architecture

    spec = get_architecture("cpu_tensor_net")
    with pytest.raises(NetworkCodeError, match="forward.*failed"):  # what the retry saves it from
        with torch.device("meta"):
            network = spec.build(CHANNELS, 3, GEOMETRIES["2d"], tiny=True)
            _forward(network, torch.zeros(2, CHANNELS, 32, 32), "on meta")
    check_plan_contract("cpu_tensor_net", GEOMETRIES["2d"])


def test_the_kit_computes_what_the_meta_device_check_cannot(defects):
    check_plan_contract("nan_net", GEOMETRIES["3d_anisotropic"])  # shapes only: NaN is invisible on meta
    with pytest.raises(AssertionError, match=r"architecture 'nan_net' from plugin 'defects' .*: the output contains "
                                             r"NaN or Inf"):
        check_forward_backward("nan_net", GEOMETRIES["3d_anisotropic"])


def test_conformance_class_passes_a_good_network_and_fails_a_broken_one(defects, pytester):
    pytester.makepyfile(test_third_party=textwrap.dedent("""
        from kt_nnunet.testing import ArchitectureConformance

        class TestGood(ArchitectureConformance):
            architecture = "good_net"

        class TestBroken(ArchitectureConformance):
            architecture = "wrong_channels_net"
    """))
    result = pytester.runpytest_inprocess("-m", "not slow", "-p", "no:cacheprovider", "-W", "error::pytest."
                                          "PytestUnknownMarkWarning")
    # Per class: 3 checks x 4 geometries (2D and 3D, isotropic and anisotropic) + 3 per architecture (the third:
    # no kit plan is refused unless replaced, which the broken network fails too); the slow training test is
    # deselected through the marker the kit's pytest plugin declares.
    outcomes = result.parseoutcomes()
    assert outcomes["deselected"] == 2, result.stdout.str()
    failed = [line for line in result.stdout.lines if line.startswith("FAILED")]
    assert failed and all("TestBroken" in line for line in failed), result.stdout.str()
    assert outcomes["passed"] + len(failed) == 30
    assert any("test_replaced_plans_are_exactly_the_refused_ones" in line for line in failed)
    assert not any("TestGood" in line for line in result.stdout.lines if line.startswith(("FAILED", "ERROR")))
    result.stdout.fnmatch_lines(["*wrong_channels_net*deep-supervision output 0 has 2 channels, the plans ask for 3*"])


def test_plan_refuses_a_broken_network_in_one_line_and_still_plans_the_others(defects, fake_entry_points,
                                                                               planned_dataset, fresh_plugins):
    fake_entry_points("broken", source="raise ImportError('missing CUDA extension')\n")
    for name, rule in (("wrong_channels_net", "deep-supervision output 0 has 2 channels, the plans ask for 3"),
                       ("plain_fcn", "does not support deep supervision: PlainFCN has no .decoder attribute")):
        result = CliRunner().invoke(main, ["plan", "Dataset990_Tiny", "--arch", name])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        error = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(error) == 1 and f"architecture {name!r} from plugin 'defects' (kt-nnunet-defects 1.0)" in error[0]
        assert "(patch [48, 48], strides [[1, 1], [2, 2], [2, 2], [2, 2]], 1 input channel(s), 3 classes)" in error[0]
        assert rule in error[0]
        assert not (planned_dataset / f"ktPlans_{name}.json").exists()

    fresh_plugins.reset()  # as a new process: the warning comes when the plugins load
    good = CliRunner().invoke(main, ["plan", "Dataset990_Tiny", "--arch", "good_net"])
    assert good.exit_code == 0, good.output
    assert "warning: plugin 'broken' (kt-nnunet-broken 1.0) failed to import" in good.stderr
    assert (planned_dataset / "ktPlans_good_net.json").is_file()


def test_architectures_lists_contract_breakers_as_broken(defects):
    result = CliRunner().invoke(main, ["architectures"])
    assert result.exit_code == 1
    broken = sorted(line.split("'")[1] for line in result.stderr.splitlines() if line.startswith("broken: "))
    assert broken == sorted(set(DEFECTS)), result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert {"good_net", "nan_net", "unet"} <= listed


@pytest.mark.slow
def test_train_step_trains_a_third_party_package_and_reports_a_broken_one(defects, fake_entry_points, tmp_path,
                                                                          monkeypatch):
    """In fresh processes, as users run them: the kit's `kt-nnunet plan`, `nnUNetv2_train` and `nnUNetv2_predict`
    find the fake package through its entry point; a broken sibling plugin is reported and changes nothing."""
    from kt_nnunet.testing import TrainStepError, train_step

    fake_entry_points("broken", source="raise ImportError('missing CUDA extension')\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{tmp_path / 'site'}")
    with pytest.raises(TrainStepError) as info, pytest.warns(KtNnunetWarning, match="plugin 'broken'"):
        train_step("wrong_channels_net", tmp_path / "work")
    assert "kt-nnunet plan" in str(info.value) and "Traceback" not in str(info.value)
    assert "deep-supervision output 0 has 2 channels, the plans ask for 3" in str(info.value)

    result = train_step("good_net", tmp_path / "work")
    assert (result.model_folder / "fold_0" / "checkpoint_final.pth").is_file()
    assert len(list(result.predictions.glob("*.nii.gz"))) == 1
    assert result.commands[2].startswith("nnUNetv2_predict -i ") and " -tr nnUNetTrainerKTBudget " in result.commands[2]
