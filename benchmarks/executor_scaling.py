"""Wall time of one small experiment run serially and with the ``local`` executor (2 workers), in one run.

    python benchmarks/executor_scaling.py [--epochs 20 --iterations 20 --repeats 2] [--smoke]

Prints ``serial_s``, ``local_s`` and ``local_over_serial=<wall ratio>`` (target: <= 0.75 on 2 cores), after
asserting that both runs gave the same per-repeat Dice for every model. The experiment: two teachers (``unet``,
``light_unet``, tiny), one ``light_unet`` student, ``multi_teacher`` mode, 64x64 generated data, each run in its
own nnU-Net folders. Both use ``threads: 1``: results are identical only with the same thread count in every
step, and at this size one thread trains faster than two anyway (a serial run of the test experiment took 47.8 s
with one thread and 56.0 s with two). Nothing else may run on the machine meanwhile (two PyTorch processes
competing for 2 cores is what the executor avoids; a third would distort both numbers).

``--smoke``: one epoch of two iterations and one repeat, to check that the script still runs.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

CONFIG = """
name: scaling
output: {output}
budget: {{epochs: {epochs}, iterations_per_epoch: {iterations}, val_iterations_per_epoch: 2}}
source: 700
transferal: 701
test: {{dataset: 702, split: test}}
repeats: {repeats}
threads: 1
teachers:
  - {{architecture: unet, tiny: true}}
  - {{architecture: light_unet, tiny: true}}
students: [{{architecture: light_unet, tiny: true}}]
modes: [multi_teacher]
evaluation: {{mirroring: false, warmup: false, overlay_cases: 0, timing_rounds: 1, timing_cases: 1}}
executor: {{poll_seconds: 0.5}}
"""


def prepare(root: Path, args) -> Path:
    from kt_nnunet.data import DOMAIN_PRESETS, ShapeConfig, synth_dataset, tiny_dataset

    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(root / variable)
    (root / "nnUNet_raw").mkdir(parents=True)
    shapes, shifted = ShapeConfig(shape=(64, 64), num_classes=3), DOMAIN_PRESETS["shifted"]
    tiny_dataset(700, "Src", num_train=8, num_test=0)
    synth_dataset(701, "Trf", num_train=8, num_test=0, shapes=shapes, domain=shifted, labelled=False, seed=1)
    synth_dataset(702, "Tst", num_train=4, num_test=4, shapes=shapes, domain=shifted, seed=2)
    config = root / "experiment.yaml"
    config.write_text(CONFIG.format(output=root / "run", epochs=args.epochs, iterations=args.iterations,
                                    repeats=args.repeats))
    return config


def run(root: Path, executor: str, args) -> tuple[float, dict]:
    from kt_nnunet.experiment.runner import run_experiment

    config = prepare(root, args)
    started = time.perf_counter()
    results = run_experiment(config, executor=executor, workers=2 if executor == "local" else None,
                             progress=lambda line: None)
    wall = time.perf_counter() - started
    models = json.loads(Path(results).read_text())["models"]
    dice = {m["name"]: [r["dice_mean"] for r in m.get("repeats") or [m]] for m in models}
    return wall, dice, step_times(config)


def step_times(config: Path) -> list:
    """``(name, seconds, depends_on)`` of every step of the run of ``config``, as its state.json recorded them."""
    from kt_nnunet.experiment.config import load_config
    from kt_nnunet.experiment.steps import plan_steps

    parsed = load_config(config)
    recorded = json.loads((Path(parsed.output) / "state.json").read_text())["steps"]
    return [(s.name, recorded.get(s.name, {}).get("seconds") or 0.0, s.depends_on) for s in plan_steps(parsed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="one epoch of two iterations, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.iterations, args.repeats = 1, 2, 1
    with tempfile.TemporaryDirectory(prefix="kt-executor-scaling-") as tmp:
        serial_s, serial_dice, serial_graph = run(Path(tmp) / "serial", "serial", args)
        local_s, local_dice, local_graph = run(Path(tmp) / "local", "local", args)
    assert local_dice == serial_dice, f"the executors disagree:\nserial {serial_dice}\nlocal  {local_dice}"
    print(f"experiment: 2 teachers, 1 student, {args.repeats} repeat(s), {args.epochs} epochs x {args.iterations} "
          f"iterations, threads 1; identical Dice under both executors")
    print(f"serial_s={serial_s:.1f} local_s={local_s:.1f} (2 workers on {os.cpu_count()} cores)")
    # What the graph itself allows: the serial run's step times scheduled on 2 workers, over their sum.
    from kt_nnunet.experiment.schedule import simulate

    bound = simulate(serial_graph, 2) / simulate(serial_graph, 1)
    # How much slower each step ran beside another one than alone (a serial step is not confined to one core).
    slowdown = sum(t for _, t, _ in local_graph) / sum(t for _, t, _ in serial_graph)
    print(f"local_over_serial={local_s / serial_s:.3f} graph_allows={bound:.3f} step_slowdown={slowdown:.3f}")


if __name__ == "__main__":
    main()
