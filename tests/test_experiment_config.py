"""The experiment config: every bad config gives one error naming the file and the key; steps of a good one."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from refusals import hand_labelled_dataset, one_error_line, write_experiment_config

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.experiment import (
    ExperimentConfigError,
    Finetune,
    LabelTransferal,
    MakeFinetuneSubset,
    Report,
    TrainBaseline,
    TrainStudent,
    TrainTeacher,
    UseTeacher,
    load_config,
    parse_config,
)
from kt_nnunet.experiment.steps import Evaluate, model_steps_of

BASE = {
    "name": "tiny",
    "output": "runs/tiny",
    "source": 501,
    "transferal": 502,
    "test": {"dataset": 503, "split": "test"},
    "budget": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
    "teachers": [{"architecture": "unet", "tiny": True}, {"architecture": "attention_unet", "name": "att"}],
    "students": ["light_unet", {"architecture": "unet", "name": "unet_student"}],
    "modes": ["single_teacher", "multi_teacher", "kt_finetune", "finetune_only"],
    "finetune": {"dataset": 503, "split": "train", "cases": 2},
    "fusion": {"method": "weighted", "weights": [0.7, 0.3]},
}


def write(tmp_path, data, name="experiment.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith((".yaml", ".yml")) else data)
    return path


def changed(path, value):
    """BASE with the key at ``path`` (a list of keys/indices) set to ``value`` (``DELETE`` removes it)."""
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


DELETE = object()

BAD = [
    # (change, key named in the message, words in the message)
    ((["students", 1, "architecture"], "unett"), "students[1].architecture",
     "unknown architecture 'unett'; did you mean 'unet'?"),
    ((["students", 0], "lite_unet"), "students[0].architecture", "did you mean 'light_unet'?"),
    ((["studnets"], ["unet"]), "studnets", "unknown key; did you mean 'students'?"),
    ((["budget", "epoch"], 3), "budget.epoch", "did you mean 'epochs'?"),
    ((["budget", "epochs"], "ten"), "budget.epochs", "expected an integer >= 1, got 'ten'"),
    ((["budget", "epochs"], 0), "budget.epochs", "expected an integer >= 1, got 0"),
    ((["teachers", 0, "model_folder"], "models/x"), "teachers[0]", "not both"),
    ((["teachers", 0], {"name": "t"}), "teachers[0]", "needs `architecture`"),
    ((["teachers", 0], {"model_folder": "m", "onnx": "n.onnx"}), "teachers[0]", "gives both `model_folder` and `onnx`"),
    ((["teachers", 0], {"onnx": "n.onnx", "checkpoint": "c.pth"}), "teachers[0].checkpoint", "goes with `model_folder`"),
    ((["teachers", 0], {"predictions": "p", "folds": [0]}), "teachers[0].folds", "not apply to a predictions"),
    ((["teachers", 0], {"model_folder": "m", "sidecar": "s.json"}), "teachers[0].sidecar", "describes an exported"),
    ((["teachers", 0], {"onnx": "n.onnx", "kind": "onnx"}), "teachers[0].kind", "`kind` goes with `path`"),
    ((["teachers", 0], {"predictions": "p", "tiny": True}), "teachers[0].tiny", "only applies to teachers trained"),
    ((["teachers", 1, "arch_kwargs"], [1, 2]), "teachers[1].arch_kwargs", "expected a mapping"),
    ((["teachers"], DELETE), "teachers", "is required"),
    ((["teachers"], []), "teachers", "at least one teacher"),
    ((["teachers", 1, "name"], "teacher_unet"), "teachers[1].name", "used twice"),
    ((["modes", 1], "multi"), "modes[1]", "did you mean 'multi_teacher'?"),
    ((["modes"], ["single_teacher", "single_teacher"]), "modes[1]", "listed twice"),
    ((["finetune"], DELETE), "finetune", "required by modes kt_finetune"),
    ((["finetune", "cases"], -1), "finetune.cases", "expected an integer >= 1"),
    ((["finetune", "split"], "test"), "finetune.dataset", "is the test set"),
    ((["finetune", "from"], "single"), "finetune.from", "did you mean 'single_teacher'?"),
    ((["fusion", "weights"], [1.0]), "fusion.weights", "1 weight(s) for 2 teacher(s)"),
    ((["fusion", "method"], "staples"), "fusion.method", "did you mean 'staple'?"),
    ((["fusion"], {"method": "mean", "weights": [1, 1]}), "fusion.weights", "only applies to `method: weighted`"),
    ((["fusion"], {"method": "weighted"}), "fusion.weights", "is required with `method: weighted`"),
    ((["fusion"], {"method": "mean", "min_confidence": 1.5}), "fusion.min_confidence", "in [0.0, 1.0]"),
    ((["transfer"], {"soft": "yes"}), "transfer.soft", "expected true or false"),
    ((["transfer"], {"mode": "onlin"}), "transfer.mode", "did you mean 'online'?"),
    ((["name"], "my experiment"), "name", "letters, digits"),
    ((["configuration"], "4d"), "configuration", "nnU-Net configuration"),
    ((["test"], DELETE), "test", "is required"),
    ((["test", "split"], "validation"), "test.split", "choose one of auto, test, train"),
    ((["transferal"], DELETE), "transferal", "teachers label the transferal dataset"),
    ((["source"], DELETE), "teachers[0].source", "is required"),
    ((["source"], [501, 504]), "teachers[0].source", "lists 2 datasets"),
    ((["source"], True), "source", "expected a dataset id"),
    ((["derived_dataset_ids"], 998), "derived_dataset_ids", "no room"),
    ((["device"], "gpu"), "device", "choose one of cpu, cuda"),
    ((["evaluation"], {"mirorring": False}), "evaluation.mirorring", "did you mean 'mirroring'?"),
    ((["teachers", 0], "unett"), "teachers[0].architecture", "did you mean 'unet'?"),
    ((["fold"], "al"), "fold", "expected 0-4 or `all`"),
    ((["fold"], 5), "fold", "expected an integer"),
]


@pytest.mark.parametrize("change, key, words", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_config_names_its_key(tmp_path, change, key, words):
    path = write(tmp_path, changed(*change))
    with pytest.raises(ExperimentConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"experiment.yaml: {key}: "), message
    assert words in message, message
    assert info.value.key == key
    assert isinstance(info.value, KtNnunetError)


def test_the_examples_message_from_the_brief(tmp_path):
    with pytest.raises(ExperimentConfigError) as info:
        load_config(write(tmp_path, changed(["students", 1, "architecture"], "unett")))
    assert str(info.value).startswith(
        "experiment.yaml: students[1].architecture: unknown architecture 'unett'; did you mean 'unet'?")


def test_external_teacher_rejects_training_keys_and_multi_teacher_needs_two(tmp_path):
    data = changed(["teachers"], [{"model_folder": "m", "budget": {"epochs": 2}}])
    with pytest.raises(ExperimentConfigError, match=r"teachers\[0\]\.budget: only applies"):
        load_config(write(tmp_path, data))
    data = changed(["teachers"], [{"architecture": "unet"}])
    data["fusion"] = "mean"
    with pytest.raises(ExperimentConfigError, match="modes: multi_teacher needs at least 2 teachers"):
        load_config(write(tmp_path, data))


def test_unparsable_files(tmp_path):
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("name: x\nteachers: [unet\n")
    with pytest.raises(ExperimentConfigError, match=r"^broken\.yaml: cannot parse YAML"):
        load_config(bad_yaml)
    with pytest.raises(ExperimentConfigError, match="unknown config format '.ini'"):
        load_config(write(tmp_path, "x", "experiment.ini"))
    with pytest.raises(ExperimentConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ExperimentConfigError, match="config is empty"):
        load_config(tmp_path / "empty.yaml")


def test_a_good_config_plans_every_step(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert config.output == (tmp_path / "runs" / "tiny").resolve()
    assert [t.name for t in config.teachers] == ["teacher_unet", "att"]
    assert config.teachers[0].budget.as_plans_budget() == {
        "num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}
    assert config.finetune.start == "multi_teacher"
    steps = config.steps()
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for index, step in enumerate(steps):  # dependencies always come first
        assert all(dep in names[:index] for dep in step.depends_on), step
    kinds = [type(s) for s in steps]
    assert kinds.count(TrainTeacher) == 2 and kinds.count(LabelTransferal) == 3
    assert kinds.count(MakeFinetuneSubset) == 1 and isinstance(steps[-1], Report)
    labels = {s.name: s for s in steps if isinstance(s, LabelTransferal)}
    assert [(s.output_id, s.output_name) for s in labels.values()] == [
        (800, "tiny_labels_teacher_unet"), (801, "tiny_labels_att"), (802, "tiny_labels_multi")]
    assert labels["label:multi"].fusion.weights == (0.7, 0.3)
    models = {s.model: s for s in model_steps_of(steps)}
    assert list(models) == [
        "teacher_unet", "att", "light_unet_from_teacher_unet", "light_unet_from_att",
        "unet_student_from_teacher_unet", "unet_student_from_att", "light_unet_multi", "unet_student_multi",
        "light_unet_multi_ft2", "unet_student_multi_ft2", "light_unet_ft2_only", "unet_student_ft2_only"]
    assert models["light_unet_from_att"].teachers == ("att",) and models["light_unet_from_att"].role == "student"
    assert models["light_unet_multi"].role == "multi_teacher_student"
    assert isinstance(models["light_unet_multi_ft2"], Finetune)
    assert models["light_unet_multi_ft2"].base_model == "light_unet_multi"
    assert isinstance(models["unet_student_ft2_only"], TrainBaseline)
    assert models["unet_student_ft2_only"].dataset_name == "tiny_finetune2"
    assert isinstance(models["unet_student_multi"], TrainStudent)
    evaluations = [s for s in steps if isinstance(s, Evaluate)]
    assert [e.model for e in evaluations] == list(models)
    json.dumps(config.as_dict())  # the echo for results.json is plain JSON


def test_defaults_toml_and_external_teachers(tmp_path, nnunet_env):
    toml = tmp_path / "exp.toml"
    toml.write_text('name = "t"\noutput = "out"\nsource = "Dataset501_Tiny"\ntransferal = "data/transferal"\n'
                    'test = 503\nstudents = ["light_unet"]\n\n[[teachers]]\narchitecture = "unet"\n\n'
                    '[[teachers]]\nmodel_folder = "models/teacher"\nfolds = [0, 1]\nname = "ext"\n')
    config = load_config(toml)
    assert config.modes == ("single_teacher", "multi_teacher")  # no finetune section: no fine-tune modes
    assert config.transferal.path == (tmp_path / "data" / "transferal").resolve()
    assert config.sources[0].dataset_id == 501 and config.test.split == "auto"
    steps = config.steps()
    external = next(s for s in steps if isinstance(s, UseTeacher))
    assert external.model == "ext" and external.folds == (0, 1)
    assert external.path == (tmp_path / "models" / "teacher").resolve()
    with pytest.raises(ExperimentConfigError, match=r"^exp\.toml: source: dataset 'Dataset501_Tiny'"):
        config.check_inputs()  # nnUNet_raw has no such dataset


def test_check_inputs_names_the_missing_dataset(tmp_path, nnunet_env):
    config = parse_config(changed(["source"], 777), source="exp.yaml", base_dir=tmp_path)
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: source: dataset 777 is not in nnUNet_raw"):
        config.check_inputs()
    (nnunet_env["nnUNet_raw"] / "Dataset777_Src").mkdir()
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: transferal: dataset 502"):
        config.check_inputs()


def test_fine_tune_from_single_teacher_students_when_there_is_no_multi_teacher_mode(tmp_path):
    data = changed(["modes"], ["single_teacher", "kt_finetune"])
    config = parse_config(data, base_dir=tmp_path)
    assert config.finetune.start == "single_teacher"
    bases = [s.base_model for s in config.steps() if isinstance(s, Finetune)]
    assert bases == ["light_unet_from_teacher_unet", "light_unet_from_att", "unet_student_from_teacher_unet",
                     "unet_student_from_att"]
    data["finetune"]["from"] = "multi_teacher"
    with pytest.raises(ExperimentConfigError, match=r"finetune\.from: kt_finetune fine-tunes the multi_teacher"):
        parse_config(data, base_dir=tmp_path)


def test_repeats_plan_every_trained_model_once_per_seed_with_its_own_datasets(tmp_path):
    data = dict(copy.deepcopy(BASE), seed=5, repeats=3)
    data["teachers"] = data["teachers"] + [{"model_folder": "models/given", "name": "given"}]
    data["fusion"] = {"method": "reliability"}
    steps = parse_config(data, base_dir=tmp_path).steps()
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for index, step in enumerate(steps):
        assert all(dep in names[:index] for dep in step.depends_on), step
    trained = [s for s in model_steps_of(steps) if s.model == "light_unet_multi"]
    assert [(s.name, s.repeat, s.seed) for s in trained] == [
        ("train_student:light_unet_multi", 0, 5), ("train_student:light_unet_multi@r1", 1, 6),
        ("train_student:light_unet_multi@r2", 2, 7)]
    assert trained[1].labelled_dataset == "tiny_labels_multi_r1"   # repeat 1's student learns repeat 1's labels
    labels = [s for s in steps if isinstance(s, LabelTransferal) and s.name.startswith("label:multi")]
    assert [(s.output_id, s.repeat) for s in labels] == [(803, 0), (808, 1), (813, 2)]  # 3 teachers + 2 per repeat
    assert [s.name for s in steps if isinstance(s, UseTeacher)] == ["use_teacher:given"]  # not retrained
    assert [s.seed for s in steps if isinstance(s, MakeFinetuneSubset)] == [5, 6, 7]
    baselines = [s for s in steps if isinstance(s, TrainBaseline) and s.model == "unet_student_ft2_only"]
    assert [b.network_from for b in baselines] == ["unet_student_multi"] * 3   # the compared student's network
    assert all(f"train_student:unet_student_multi{suffix}" in b.depends_on
               for b, suffix in zip(baselines, ("", "@r1", "@r2")))
    assert names[-2:] == ["time_inference", "report"]
    with pytest.raises(ExperimentConfigError, match=r"no room for 15 derived datasets \(3 repeat"):
        parse_config(dict(data, derived_dataset_ids=990), base_dir=tmp_path)


def test_teachers_take_a_bare_architecture_name_as_students_do_and_fold_all(tmp_path):
    data = changed(["teachers"], ["unet", {"architecture": "attention_unet", "name": "att"}])
    data["fold"] = "all"
    config = parse_config(data, base_dir=tmp_path)
    assert [(t.name, t.architecture, t.trained_here) for t in config.teachers] == [
        ("teacher_unet", "unet", True), ("att", "attention_unet", True)]
    assert config.fold == "all"
    assert parse_config(BASE, base_dir=tmp_path).fold == 0


def test_a_teacher_may_have_its_own_configuration_offline_only(tmp_path):
    data = changed(["teachers", 0], {"architecture": "unet", "configuration": "3d_fullres"})
    data["configuration"] = "2d"
    config = parse_config(data, base_dir=tmp_path)
    assert [t.configuration for t in config.teachers] == ["3d_fullres", None]
    step = next(s for s in config.steps() if s.name == "train_teacher:teacher_unet")
    assert step.configuration == "3d_fullres"
    with pytest.raises(ExperimentConfigError, match=r"transfer.mode: online transfer .* teachers\[0\].configuration"):
        parse_config(dict(data, transfer={"mode": "online"}), base_dir=tmp_path)
    with pytest.raises(ExperimentConfigError, match="teachers.0..configuration"):
        parse_config(changed(["teachers", 0], {"architecture": "unet", "configuration": "4d"}), base_dir=tmp_path)


def test_a_finetune_folder_that_is_the_test_dataset_is_refused(nnunet_env, tmp_path):
    """The fine-tune/test leak check compared ids or paths only, so a folder path and an id passed."""
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.schema import ExperimentConfigError

    from kt_nnunet.data import tiny_dataset

    raw = nnunet_env["nnUNet_raw"]
    for folder in ("Dataset501_Src", "Dataset502_Trans"):
        (raw / folder).mkdir()
    tiny_dataset(503, "Test", raw, num_train=2, num_test=0)  # the fine-tune set needs its 2 cases
    (tmp_path / "alias").symlink_to(raw / "Dataset503_Test")
    data = {"name": "tiny", "output": "runs/tiny", "source": 501, "transferal": 502,
            "test": {"dataset": 503, "split": "train"},
            "budget": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
            "teachers": [{"architecture": "unet"}], "students": ["light_unet"],
            "modes": ["single_teacher", "kt_finetune"],
            "finetune": {"dataset": str(tmp_path / "alias"), "split": "train", "cases": 2}}
    config = parse_config(data, source="exp.yaml", base_dir=tmp_path)
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: finetune\.dataset: is the test set"):
        config.check_inputs()
    data["test"]["split"] = "test"  # other split of the same dataset: no leak
    parse_config(data, source="exp.yaml", base_dir=tmp_path).check_inputs()


def test_arch_kwargs_are_checked_when_the_config_is_read(tmp_path):
    """An experiment's arch_kwargs typo would only fail (or silently train the default) steps later."""
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.schema import ExperimentConfigError

    data = {"name": "tiny", "output": "runs/tiny", "source": 501, "transferal": 502,
            "test": {"dataset": 503, "split": "test"}, "teachers": [{"architecture": "unet"}],
            "students": [{"architecture": "light_unet", "arch_kwargs": {"base_feature": 8}}],
            "modes": ["single_teacher"]}
    with pytest.raises(ExperimentConfigError, match=r"^exp\.yaml: students\[0\]\.arch_kwargs: .*'base_feature'; "
                                                    r"did you mean 'base_features'"):
        parse_config(data, source="exp.yaml", base_dir=tmp_path)


def _experiment_inputs(raw: Path) -> None:
    from kt_nnunet.data import tiny_dataset

    for dataset_id, name in ((501, "Src"), (502, "Trans"), (503, "Test")):
        tiny_dataset(dataset_id, name, raw, num_train=2, num_test=1)


@pytest.fixture
def no_step_runs(monkeypatch):
    """These configs must be refused before the first step; a step that starts fails the test at once."""
    from kt_nnunet.experiment.runner import ExperimentRunner

    def execute(self, step):
        raise AssertionError(f"step {step.name} ran before the config was refused")

    monkeypatch.setattr(ExperimentRunner, "execute", execute)


def test_finetune_cases_beyond_the_dataset_are_refused_before_any_step(nnunet_env, tmp_path, no_step_runs):
    """`finetune.cases` larger than the fine-tune dataset was refused only after every model was trained,
    when the fine-tune subset was made."""
    _experiment_inputs(nnunet_env["nnUNet_raw"])
    config = write_experiment_config(tmp_path, tmp_path / "run", "ft.yaml", modes=["single_teacher", "kt_finetune"],
                                finetune={"dataset": 503, "split": "train", "cases": 5})
    one_error_line(["experiment", str(config)], "ft.yaml: finetune.cases: 5 cases asked for",
                    "Dataset503_Test has only 2 labelled case(s) in its train split", "choose at most 2")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["another name has the id", "an input has the id", "a hand-made folder"])
def test_a_derived_dataset_id_clash_is_refused_before_any_step(nnunet_env, tmp_path, no_step_runs, case):
    """A `derived_dataset_ids` clash was found only at the first label step, after the teachers trained."""
    raw = nnunet_env["nnUNet_raw"]
    _experiment_inputs(raw)
    changes, expected = {
        "another name has the id": ({}, [str(nnunet_env["nnUNet_preprocessed"] / "Dataset800_Other"),
                                         "already has id 800"]),
        "an input has the id": ({"derived_dataset_ids": 502}, ["derived_dataset_ids: 502 gives", "which transferal"]),
        "a hand-made folder": ({}, [str(raw / "Dataset800_tiny_labels_teacher_unet"), "kt-nnunet did not write it"]),
    }[case]
    if case == "another name has the id":  # planned by someone else: nnU-Net would mix the two up
        (nnunet_env["nnUNet_preprocessed"] / "Dataset800_Other").mkdir()
    if case == "a hand-made folder":
        hand_labelled_dataset(raw / "Dataset800_tiny_labels_teacher_unet")
    config = write_experiment_config(tmp_path, tmp_path / "run", "ids.yaml", **changes)
    one_error_line(["experiment", str(config)], "ids.yaml: derived_dataset_ids: ", *expected,
                    "choose derived_dataset_ids so that ids")
    assert not (tmp_path / "run").exists()


def test_a_refused_config_leaves_no_output_folder(nnunet_env, tmp_path, monkeypatch, no_step_runs):
    """Refused configs left an empty output folder (and, with nnU-Net's variables unset, its empty
    nnUNet_raw/preprocessed/results)."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(variable)  # the experiment's own nnU-Net folders: none holds the inputs yet
    config = write_experiment_config(tmp_path, tmp_path / "runs" / "tiny", "missing.yaml")
    one_error_line(["experiment", str(config)], "missing.yaml: source: dataset 501 is not in nnUNet_raw")
    assert not (tmp_path / "runs").exists()
