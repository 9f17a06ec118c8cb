"""The conformance kit as pytest test classes: subclass one, name what your plugin registers, and pytest runs every
check.

    from kt_nnunet.testing import ArchitectureConformance, TeacherKindConformance

    class TestMyNet(ArchitectureConformance):
        architecture = "my_net"

    class TestMyToolKind(TeacherKindConformance):
        kind = "my_tool"
        sample = "data/sample.mytool"  # a teacher of that kind, relative to this file

For architectures, checks that depend on the plan run once per geometry the spec declares (2D and/or 3D,
isotropic and anisotropic); the tiny ``kt-nnunet plan`` + ``nnUNetv2_train`` (+ ``nnUNetv2_predict``) run is
marked ``slow``. A teacher kind's checks (``kind_checks.py``) each take a fresh copy of the sample.
"""
from __future__ import annotations

import glob
import inspect
import shutil
from pathlib import Path
from typing import ClassVar, Optional, Sequence, Union

import pytest

from kt_nnunet.testing import checks, kind_checks


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


class TeacherKindConformance:
    """Base class of a pytest test class checking the teacher kind ``kind`` on a sample teacher of that kind.

    ``sample`` is its path, absolute or relative to the test module's folder; each test works on a copy (a folder
    whole, a file with the files beside it that share its stem, such as an exported network's sidecar). Override
    ``make_sample(folder)`` to write the sample instead, ``modify(sample)`` to change the copy's files in a way
    the kind can still read (default: a newline appended to the file, or to a folder's ``.json`` files), and
    ``image_files(folder, channels)`` for another tiny image than a 16x16 NIfTI called ``case_000``
    (``kind_checks.CASE``, ``kind_checks.IMAGE_SHAPE``: what a predictions-like sample must hold).
    """

    kind: ClassVar[str] = ""
    sample: ClassVar[Optional[Union[str, Path]]] = None

    def make_sample(self, folder: Path) -> Path:
        """A fresh copy of ``sample`` in ``folder``; returns its path."""
        if self.sample is None:
            raise pytest.UsageError(f"{type(self).__name__}: set `sample = \"<a teacher of kind {self.kind!r}>\"` "
                                    "or override make_sample(folder)")
        source = Path(inspect.getfile(type(self))).parent / Path(self.sample).expanduser()
        if not source.exists():
            raise pytest.UsageError(f"{type(self).__name__}.sample {source} does not exist")
        folder.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            return Path(shutil.copytree(source, folder / source.name))
        for sibling in source.parent.glob(f"{glob.escape(source.stem)}.*"):
            if sibling.is_file():
                shutil.copy2(sibling, folder / sibling.name)
        return folder / source.name

    def modify(self, sample: Path) -> None:
        kind_checks.append_newline(sample)

    def image_files(self, folder: Path, channels: int) -> list:
        return kind_checks.tiny_image(folder, channels)

    @pytest.fixture
    def teacher_sample(self, tmp_path):
        if not self.kind:
            raise pytest.UsageError(f"{type(self).__name__}: set `kind = \"<registered teacher kind name>\"`")
        return self.make_sample(tmp_path / "sample")

    def test_kind_is_registered_with_a_valid_name(self):
        kind_checks.check_registered(self.kind)

    def test_claims_its_sample_and_not_an_unrelated_path(self, teacher_sample, tmp_path):
        if kind_checks.check_registered(self.kind).claims is None:
            pytest.skip(f"teacher kind {self.kind!r} has no claims(): users always write {self.kind}:PATH")
        kind_checks.check_claims(self.kind, teacher_sample, tmp_path / "unrelated")

    def test_opens_a_teacher_with_valid_labels(self, teacher_sample):
        kind_checks.check_labels(self.kind, kind_checks.open_sample(self.kind, teacher_sample))

    def test_probabilities_on_a_tiny_image(self, teacher_sample, tmp_path):
        teacher = kind_checks.open_sample(self.kind, teacher_sample)
        files = self.image_files(tmp_path / "images", teacher.num_input_channels or 1)
        kind_checks.check_probabilities(self.kind, teacher, files)

    def test_fingerprint_is_stable_and_follows_the_files(self, teacher_sample):
        kind_checks.check_fingerprint(self.kind, teacher_sample, self.modify)
