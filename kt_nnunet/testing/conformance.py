"""The conformance kit as a pytest test class: subclass it, name the architecture, and pytest runs every check.

    from kt_nnunet.testing import ArchitectureConformance

    class TestMyNet(ArchitectureConformance):
        architecture = "my_net"

Checks that depend on the plan run once per geometry the spec declares (2D and/or 3D, isotropic and anisotropic);
the tiny ``kt-nnunet plan`` + ``nnUNetv2_train`` (+ ``nnUNetv2_predict``) run is marked ``slow``.
"""
from __future__ import annotations

from typing import ClassVar, Sequence, Union

import pytest

from kt_nnunet.testing import checks


class ArchitectureConformance:
    """Base class of a pytest test class checking nnU-Net's network contract for ``architecture``.

    ``architecture`` is a registered name, or several; ``train`` runs the tiny real nnU-Net training (slow) and
    ``predict`` the printed ``nnUNetv2_predict`` after it. ``plans`` replaces kit plans (``GEOMETRIES``, by key)
    that a fixed-topology architecture cannot take (a transformer whose patch must be a multiple of 32, say)
    with plans of the same dimensionality that it can; ``test_replaced_plans_are_exactly_the_refused_ones``
    checks that each replaced plan is refused as ``kt-nnunet plan`` refuses it and every other one is taken.
    """

    architecture: ClassVar[Union[str, Sequence[str]]] = ()
    train: ClassVar[bool] = True
    predict: ClassVar[bool] = True
    plans: ClassVar[dict] = {}

    @classmethod
    def geometry(cls, key: str):
        """The plan the checks run at for kit plan ``key``: the class's replacement, or the kit's own."""
        return cls.plans.get(key) or checks.GEOMETRIES[key]

    @classmethod
    def architecture_names(cls) -> list[str]:
        return [cls.architecture] if isinstance(cls.architecture, str) else list(cls.architecture)

    def pytest_generate_tests(self, metafunc):
        names = self.architecture_names()
        if not names:
            raise pytest.UsageError(f"{type(self).__name__}: set `architecture = \"<registered name>\"`")
        if "geometry" in metafunc.fixturenames:
            cases = [pytest.param(name, key, id=f"{name}-{key}") for name in names
                     for key in checks.geometries_for(checks.resolve(name))]
            metafunc.parametrize(("architecture_name", "geometry"), cases)
        elif "architecture_name" in metafunc.fixturenames:
            metafunc.parametrize("architecture_name", names)

    @pytest.fixture(scope="class")
    @classmethod
    def nnunet_workdir(cls, tmp_path_factory):
        """nnU-Net's folders, shared by the class's training runs so the tiny dataset is preprocessed once."""
        return tmp_path_factory.mktemp("kt_nnunet_conformance")

    def test_contract_at_plan_geometry(self, architecture_name, geometry):
        checks.check_plan_contract(architecture_name, self.geometry(geometry), tiny=True)

    def test_forward_backward_and_deep_supervision(self, architecture_name, geometry):
        checks.check_forward_backward(architecture_name, self.geometry(geometry))

    def test_state_dict_is_independent_of_deep_supervision(self, architecture_name, geometry):
        checks.check_state_dict(architecture_name, self.geometry(geometry))

    def test_replaced_plans_are_exactly_the_refused_ones(self, architecture_name):
        checks.check_refused_plans(architecture_name, set(self.plans))

    def test_plans_kwargs_build_the_same_network_as_nnunet(self, architecture_name):
        checks.check_nnunet_builds_the_same(architecture_name)

    def test_default_size_builds_and_rejects_bad_patch(self, architecture_name):
        checks.check_default_size(architecture_name)

    @pytest.mark.slow
    def test_tiny_nnunet_training(self, architecture_name, nnunet_workdir):
        if not self.train:
            pytest.skip(f"{type(self).__name__}.train is False")
        from kt_nnunet.testing.training import train_step

        train_step(architecture_name, nnunet_workdir, predict=self.predict)
