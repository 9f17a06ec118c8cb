"""Resuming interrupted runs, --num-parts sharding and torchrun ranks: always the labels of one plain run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from labelling_teachers import labels_of, teachers, transferal  # noqa: F401  (fixtures)

from kt_nnunet.labelling import label_dataset
from kt_nnunet.labelling.output import LabelledDatasetWriter

SETTINGS = {"fusion": "staple", "tta": False, "save_probabilities": True}
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
