"""The schedule simulation (wall time with more workers, critical path) on hand-computed graphs, and the report's
"How long with more workers" section."""
from __future__ import annotations

import copy
import json

import pytest

from kt_nnunet.experiment.config import parse_config
from kt_nnunet.experiment.html_report import render_html
from kt_nnunet.experiment.report import render_report
from kt_nnunet.experiment.results import ResultsError, build_results, validate_results
from kt_nnunet.experiment.schedule import critical_path, schedule_summary, simulate

CHAIN = [("a", 5.0, []), ("b", 7.0, ["a"]), ("c", 0.0, ["b"]), ("d", 3.0, ["c"])]
# a (2) -> b (10), c (4) -> d (1): the long arm is a, b, d = 13 s
DIAMOND = [("a", 2.0, []), ("b", 10.0, ["a"]), ("c", 4.0, ["a"]), ("d", 1.0, ["b", "c"])]
SECTION = "## How long with more workers"


def test_a_chain_takes_its_sum_with_any_number_of_workers():
    for workers in (1, 2, 16, None):
        assert simulate(CHAIN, workers) == 15.0
    assert critical_path(CHAIN) == (15.0, ["a", "b", "c", "d"])


def test_a_diamond_runs_its_arms_in_parallel():
    assert simulate(DIAMOND, 1) == 17.0
    assert simulate(DIAMOND, 2) == 13.0     # b and c together after a, d after b
    assert simulate(DIAMOND, None) == 13.0
    assert critical_path(DIAMOND) == (13.0, ["a", "b", "d"])


def test_five_independent_steps_on_two_workers_take_three_rounds():
    steps = [(f"s{i}", 10.0, []) for i in range(5)]
    assert simulate(steps, 2) == 30.0
    assert simulate(steps, 5) == simulate(steps, None) == 10.0
    assert simulate(steps, 1) == 50.0


def test_a_free_worker_takes_the_earliest_planned_ready_step():
    assert simulate([("a", 4.0, []), ("b", 3.0, []), ("c", 3.0, [])], 2) == 6.0   # a | b, c
    assert simulate([("b", 3.0, []), ("c", 3.0, []), ("a", 4.0, [])], 2) == 7.0   # b, a | c
    # at t = 1 `a` finishes: `b` (just released, planned earlier) goes before `c` (waiting since t = 0)
    steps = [("long", 3.0, []), ("a", 1.0, []), ("b", 3.0, ["a"]), ("c", 1.0, [])]
    assert simulate(steps, 2) == 4.0          # long, c | a, b
    assert simulate([steps[0], steps[1], steps[3], steps[2]], 2) == 5.0   # long | a, c, b


def test_zero_second_and_untimed_steps():
    steps = [("a", 0.0, []), ("b", 0.0, ["a"]), ("c", 4.0, ["b"]), ("report", None, ["c"])]
    assert simulate(steps, 1) == 4.0
    summary = schedule_summary(steps)
    assert summary["untimed"] == ["report"]
    assert summary["critical_path"] == ["a", "b", "c", "report"]
    assert summary["workers"] == {"1": 4.0, "4": 4.0, "8": 4.0, "16": 4.0}
    assert simulate([], 4) == 0.0 and critical_path([]) == (0.0, [])


@pytest.mark.parametrize("steps, message", [
    ([("a", 1.0, []), ("b", 1.0, ["x"])], "unknown step"),
    ([("a", 1.0, ["b"]), ("b", 1.0, ["a"])], "cycle"),
    ([("a", 1.0, ["a"])], "cycle"),
    ([("a", 1.0, []), ("a", 2.0, [])], "twice"),
    ([("a", -1.0, [])], "seconds"),
])
def test_bad_graphs_raise(steps, message):
    with pytest.raises(ValueError, match=message):
        simulate(steps, 2)
    with pytest.raises(ValueError, match=message):
        critical_path(steps)


def test_summary_of_a_planned_experiment_in_the_runners_shape(tmp_path):
    """The runner passes ``step_graph`` built from ``plan_steps`` exactly like this."""
    from test_experiment_config import BASE

    data = dict(copy.deepcopy(BASE), repeats=2)
    steps = parse_config(data, base_dir=tmp_path).steps()
    timings = {s.name: (600.0 if s.name.startswith(("train", "finetune:")) else 30.0) for s in steps}
    del timings["report"]   # the report step is still running when results.json is written
    step_graph = [{"name": s.name, "depends_on": list(s.depends_on), "seconds": timings.get(s.name)}
                  for s in steps]
    results = build_results([model_record()], config={"name": "plan"}, timings=timings, step_graph=step_graph)
    schedule = json.loads(json.dumps(results))["schedule"]
    serial = sum(timings.values())
    assert schedule["serial_seconds"] == pytest.approx(serial) == schedule["workers"]["1"]
    assert schedule["untimed"] == ["report"]
    path = schedule["critical_path"]
    depends = {s.name: s.depends_on for s in steps}
    assert path[-1] == "report" and not depends[path[0]]
    assert all(earlier in depends[later] for earlier, later in zip(path, path[1:]))   # a real chain of steps
    assert schedule["unlimited_seconds"] == pytest.approx(sum(timings.get(name, 0.0) for name in path))
    for count in ("4", "8", "16"):
        assert schedule["unlimited_seconds"] <= schedule["workers"][count] < serial
        assert schedule["workers"][count] >= serial / int(count)
    assert schedule["unlimited_seconds"] < serial / 4   # two repeats and several models run side by side


def model_record(name="teacher_unet"):
    return {"name": name, "role": "teacher", "architecture": "unet", "dice_mean": 0.8, "params": 1000,
            "seconds_per_case": 0.5}


def diamond_graph():
    return [{"name": name, "depends_on": list(depends_on), "seconds": seconds} for name, seconds, depends_on in
            [("train_teacher:a", 3000.0, []), ("train_teacher:b", 1200.0, []),
             ("evaluate:a", 100.0, ["train_teacher:a"]), ("evaluate:b", 100.0, ["train_teacher:b"]),
             ("report", None, ["evaluate:a", "evaluate:b"])]]


def test_the_report_has_the_schedule_section_only_when_results_have_a_schedule():
    with_schedule = build_results([model_record()], config={"name": "s"}, step_graph=diamond_graph())
    assert with_schedule["schedule"]["workers"] == {"1": 4400.0, "4": 3100.0, "8": 3100.0, "16": 3100.0}
    markdown = render_report(validate_results(with_schedule), {}, {})
    assert SECTION in markdown
    assert "| 1 worker (as run serially) | 1:13:20 | 4400.0 | 1.00× |" in markdown
    assert "| 4 workers | 51:40 | 3100.0 | 1.42× |" in markdown
    assert "| unlimited (critical path) | 51:40 | 3100.0 | 1.42× |" in markdown
    assert "from `train_teacher:a` to `report` (3 steps, 51:40)" in markdown
    assert "Queue wait and per-job start-up" in markdown and "`report`." in markdown
    assert 'id="schedule-section"' in render_html(with_schedule, {}, {})

    without = build_results([model_record()], config={"name": "s"})
    assert "schedule" not in without
    old = json.loads(json.dumps(without))   # a results.json written before the key existed
    assert SECTION not in render_report(validate_results(old), {}, {})
    assert "schedule-section" not in render_html(old, {}, {})


def test_a_broken_schedule_names_the_key():
    results = json.loads(json.dumps(build_results([model_record()], config={"name": "s"},
                                                  step_graph=diamond_graph())))
    results["schedule"]["workers"]["4"] = "soon"
    with pytest.raises(ResultsError, match=r"schedule\.workers"):
        validate_results(results)
    del results["schedule"]["unlimited_seconds"]
    with pytest.raises(ResultsError, match=r"schedule\.unlimited_seconds"):
        validate_results(results)
