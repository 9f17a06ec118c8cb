"""Resuming interrupted runs, --num-parts sharding and torchrun ranks: always the labels of one plain run; the
hidden work folder they share is never lost to a race, a retry or a killed finalisation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from labelling_teachers import labels_of, teachers, transferal  # noqa: F401  (fixtures)

from kt_nnunet.labelling import label_dataset
from kt_nnunet.labelling.output import LabelledDatasetWriter
from kt_nnunet.teachers.methods import FusionSettings

SETTINGS = {"fusion": FusionSettings("staple", tta=False), "save_probabilities": True}
CASES = ["case_000", "case_001", "case_002", "case_003"]


def pair(teachers):  # noqa: F811
    return [teachers["unet"], teachers["ct2mm"]]


@pytest.fixture(scope="module")
def reference(teachers, transferal, tmp_path_factory):  # noqa: F811
    """One uninterrupted, unsharded run."""
    out = tmp_path_factory.mktemp("reference") / "Dataset840_Reference"
    return label_dataset(pair(teachers), transferal, out, progress=False, **SETTINGS).dataset


def assert_same_dataset(dataset, reference):
    ours, theirs = labels_of(dataset), labels_of(reference)
    assert list(ours) == list(theirs)
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name
    for case in CASES:
        a = np.load(dataset / "probabilitiesTr" / f"{case}.npz")["probabilities"]
        b = np.load(reference / "probabilitiesTr" / f"{case}.npz")["probabilities"]
        assert np.array_equal(a, b)
    records = lambda d: {c: {k: v for k, v in r.items()}  # noqa: E731
                         for c, r in json.loads((d / "provenance.json").read_text())["cases"].items()}
    assert records(dataset) == records(reference)
    assert json.loads((dataset / "dataset.json").read_text())["labels"] == \
        json.loads((reference / "dataset.json").read_text())["labels"]


def hidden_work_folder(out):
    return out.parent / f".kt-label-{out.name}"


def test_an_interrupted_run_resumes_where_it_stopped(teachers, transferal, reference, tmp_path, monkeypatch):  # noqa: F811,E501
    out = tmp_path / "Dataset841_Resume"
    finished = []
    original = LabelledDatasetWriter.finish_case

    def interrupt_third(self, case, record):
        if len(finished) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third case is being written
        finished.append(case)
        original(self, case, record)

    monkeypatch.setattr(LabelledDatasetWriter, "finish_case", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        label_dataset(pair(teachers), transferal, out, progress=False, **SETTINGS)
    monkeypatch.undo()
    assert not out.exists()  # the dataset appears only complete
    work = hidden_work_folder(out)
    assert sorted(p.stem for p in (work / ".kt-state" / "cases").iterdir()) == ["case_000", "case_001"]
    assert not list(work.rglob(".tmp-*"))

    resumed = label_dataset(pair(teachers), transferal, out, progress=False, **SETTINGS)
    assert resumed.complete
    assert resumed.skipped == ["case_000", "case_001"] and resumed.labelled == ["case_002", "case_003"]
    assert not work.exists() and not (out / ".kt-state").exists() and not list(out.rglob(".tmp-*"))
    assert_same_dataset(out, reference)


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_half_written(teachers, transferal, reference, tmp_path):  # noqa: F811
    """kill -9 between writing the third label file and renaming it into place."""
    out = tmp_path / "Dataset842_Killed"
    script = textwrap.dedent(f"""
        import os, signal
        from kt_nnunet.labelling import label_dataset
        from kt_nnunet.teachers.methods import FusionSettings
        real_replace, count = os.replace, []
        def replace(src, dst):
            if str(dst).endswith(".nii.gz") and "labelsTr" in str(dst):
                count.append(dst)
                if len(count) == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        os.replace = replace
        label_dataset({[str(t) for t in pair(teachers)]!r}, {str(transferal)!r}, {str(out)!r}, progress=False,
                      **{SETTINGS!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr[-2000:]
    assert not out.exists()
    work = hidden_work_folder(out)
    assert len(list(work.rglob(".tmp-*"))) == 1  # the unrenamed third label, hidden and never used
    resumed = label_dataset(pair(teachers), transferal, out, progress=False, **SETTINGS)
    assert resumed.skipped == ["case_000", "case_001"] and resumed.complete
    assert not list(out.rglob(".tmp-*")) and not work.exists()
    assert_same_dataset(out, reference)


def test_other_settings_do_not_resume_an_unfinished_run(teachers, transferal, tmp_path):  # noqa: F811
    out = tmp_path / "Dataset843_Other"
    hidden_work_folder(out).joinpath(".kt-state").mkdir(parents=True)
    hidden_work_folder(out).joinpath(".kt-state", "settings.json").write_text('{"fusion": "mean"}')
    hidden_work_folder(out).joinpath(".kt-state", "cases").mkdir()
    hidden_work_folder(out).joinpath(".kt-state", "cases", "case_000.json").write_text("{}")  # a finished case
    from kt_nnunet.labelling import OutputStateError

    with pytest.raises(OutputStateError, match="unfinished labelling run with other settings.*--force"):
        label_dataset(pair(teachers), transferal, out, progress=False, **SETTINGS)
    result = label_dataset(pair(teachers), transferal, out, progress=False, force=True, **SETTINGS)
    assert result.complete and len(result.labelled) == 4


def test_sharded_parts_equal_one_run(teachers, transferal, reference, tmp_path):  # noqa: F811
    out = tmp_path / "Dataset844_Parts"
    first = label_dataset(pair(teachers), transferal, out, num_parts=2, part_id=1, progress=False, **SETTINGS)
    assert not first.complete and first.labelled == ["case_001", "case_003"] and not out.exists()
    second = label_dataset(pair(teachers), transferal, out, num_parts=2, part_id=0, progress=False, **SETTINGS)
    assert second.complete and second.labelled == ["case_000", "case_002"]
    assert_same_dataset(out, reference)
    late = label_dataset(pair(teachers), transferal, out, num_parts=2, part_id=1, progress=False, **SETTINGS)
    assert late.complete and late.labelled == []


@pytest.mark.slow
def test_torchrun_ranks_equal_one_run(teachers, transferal, reference, tmp_path):  # noqa: F811
    out = tmp_path / "Dataset845_Torchrun"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    kt = shutil.which("kt-nnunet", path=os.path.dirname(sys.executable)) or shutil.which("kt-nnunet")
    command = [torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", kt, "label",
               "--teacher", str(teachers["unet"]), "--teacher", str(teachers["ct2mm"]),
               "--images", str(transferal), "--out", str(out), "--fusion", "staple", "--no-tta",
               "--save-probabilities", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "part 1/2" in result.stdout and "part 2/2" in result.stdout
    assert_same_dataset(out, reference)


def test_an_unfinished_run_without_a_finished_case_is_replaced_without_asking(tmp_path):
    """A refused label command left a work folder; the corrected command was refused as 'other settings'."""
    from kt_nnunet.labelling import OutputStateError
    from kt_nnunet.labelling.output import LabelledDatasetWriter

    target = tmp_path / "Dataset833_Retry"
    assert LabelledDatasetWriter(target, {"tile_step_size": 0.0}, ".nii.gz").prepare(force=False)
    corrected = LabelledDatasetWriter(target, {"tile_step_size": 0.5}, ".nii.gz")
    assert corrected.prepare(force=False)
    assert json.loads((corrected.state / "settings.json").read_text()) == {"tile_step_size": 0.5}
    (corrected.state / "cases" / "case_000.json").write_text("{}")  # now it has work to lose: ask first
    with pytest.raises(OutputStateError, match="unfinished labelling run with other settings.*--force"):
        LabelledDatasetWriter(target, {"tile_step_size": 0.25}, ".nii.gz").prepare(force=False)


def test_a_part_never_removes_the_work_folder_another_part_is_creating(tmp_path, monkeypatch):
    """Two `--num-parts` processes started in the same instant: one deleted the other's half-created
    work folder, which then died with FileNotFoundError (5 of 300 trials). Here part 1 runs its whole
    ``prepare()`` while part 0 is paused right after its first mkdir."""
    import threading

    from kt_nnunet.labelling.output import LabelledDatasetWriter

    target = tmp_path / "Dataset836_Race"
    settings = {"tile_step_size": 0.5}
    paused, second_done = threading.Event(), threading.Event()
    real_mkdir, real_rmtree = os.mkdir, shutil.rmtree
    removed, failures, results = [], [], {}

    def mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if threading.current_thread().name == "part0" and not paused.is_set():
            paused.set()
            second_done.wait(timeout=1)  # part 1 prepares now, unless it has to wait for part 0

    def rmtree(path, *args, **kwargs):
        removed.append(Path(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(shutil, "rmtree", rmtree)

    def part(index):
        try:
            results[index] = LabelledDatasetWriter(target, settings, ".nii.gz").prepare(force=False)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            failures.append(f"part {index}: {type(exc).__name__}: {exc}")
        finally:
            if index == 1:
                second_done.set()

    first = threading.Thread(target=part, args=(0,), name="part0")
    first.start()
    assert paused.wait(timeout=10)
    second = threading.Thread(target=part, args=(1,), name="part1")
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    work = LabelledDatasetWriter(target, settings, ".nii.gz").work
    assert not failures, failures
    assert results == {0: True, 1: True}
    assert [p for p in removed if p == work or work in p.parents] == []
    assert json.loads((work / ".kt-state" / "settings.json").read_text()) == settings
    assert (work / "imagesTr").is_dir() and (work / "labelsTr").is_dir() and (work / ".kt-state/cases").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [work.name]  # no staging folder or lock file left


def test_a_killed_finalisation_leaves_no_temporary_file_in_the_published_dataset(tmp_path):
    """A kill during finalisation left `.provenance.json.*.tmp` in the work folder, and the resumed run
    moved it into the final dataset."""
    from kt_nnunet.labelling.output import LabelledDatasetWriter

    writer = LabelledDatasetWriter(tmp_path / "Dataset837_Final", {"tile_step_size": 0.5}, ".nii.gz")
    assert writer.prepare(force=False)
    writer.write_label("case_000", lambda path: Path(path).write_bytes(b"label"))
    writer.finish_case("case_000", {})
    (writer.work / ".provenance.json.k1ll3d0k.tmp").write_text('{"half": ')  # what the killed run left
    (writer.work / "labelsTr" / ".case_000.nii.gz.a1b2c3d4.tmp").write_bytes(b"torn")

    def metadata(folder, records):
        (folder / "dataset.json").write_text("{}")
        (folder / "provenance.json").write_text(json.dumps({"settings_fingerprint": writer.fingerprint}))

    assert writer.finalize(["case_000"], metadata)
    published = sorted(str(p.relative_to(writer.target)) for p in writer.target.rglob("*"))
    assert published == ["dataset.json", "imagesTr", "labelsTr", "labelsTr/case_000.nii.gz", "provenance.json"]
