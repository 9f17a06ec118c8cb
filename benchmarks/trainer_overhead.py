"""Epoch time of the transfer trainers against stock nnU-Net, measured in one run on the same data.

    python benchmarks/trainer_overhead.py [--epochs 16 --iterations 20 --val-iterations 5] [--smoke]

* ``offline_over_stock``: median epoch of ``nnUNetTrainerKTOffline`` / median epoch of the stock trainer.
  Both train the same student (same plans, same preprocessed data); the stock trainer is nnU-Net's
  ``nnUNetTrainer`` with only the epoch and iteration counts set (``nnUNetTrainerKTBudget``).
* ``online_over_expected``: median epoch of ``nnUNetTrainerKTOnline`` / (median stock epoch + median teacher
  forward cost of one epoch). The teacher cost is timed on its own: the teacher networks on batches of the
  student's batch and patch size, once per training and validation iteration, as the trainer calls them.

The trainers are built and started once, then their epochs are interleaved (stock, offline, online, a
second stock trainer as a noise control, teacher-only; the order rotates every epoch) so that load from other processes on the machine hits them
alike. An epoch is nnU-Net's loop body (``run_training``): training and validation iterations plus
``on_epoch_end`` (logging, ``checkpoint_best``, the progress plot), so it includes the KT trainers'
checkpoint rewrite. The first epoch is warm-up and dropped. Targets: offline <= 1.05, online <= 1.1.

Timing: both wall and process CPU time are printed; the ratios use CPU time by default (``--clock``), with
one torch thread, because on a shared machine the wall time of an epoch varied 3x between consecutive
epochs (other processes), while one thread's CPU time is what the trainer itself costs.

``--smoke``: 2 epochs (one timed) of 2 training and 1 validation iterations on 5 cases, to check that the
script still runs (for the CI smoke test; the ratios mean nothing).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def clocks() -> tuple:
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple) -> tuple:
    """(wall, CPU) seconds since ``start``; CPU time is this process's, all threads."""
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def run_epoch(trainer) -> tuple:
    """One epoch exactly as ``nnUNetTrainer.run_training`` runs it; returns its (wall, CPU) time."""
    import torch

    start = clocks()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    outputs = [trainer.train_step(next(trainer.dataloader_train)) for _ in range(trainer.num_iterations_per_epoch)]
    trainer.on_train_epoch_end(outputs)
    with torch.no_grad():
        trainer.on_validation_epoch_start()
        outputs = [trainer.validation_step(next(trainer.dataloader_val))
                   for _ in range(trainer.num_val_iterations_per_epoch)]
        trainer.on_validation_epoch_end(outputs)
    trainer.on_epoch_end()
    return elapsed(start)


class TeacherForward:
    """The teachers' share of an online epoch: their forward passes (and softmax) on the student's batches."""

    def __init__(self, teacher_folder: Path, batch_size: int, patch_size, steps: int):
        import torch

        from kt_nnunet.nnunet.model_folder import load_trained_model

        model = load_trained_model(teacher_folder)
        self.networks = model.load_fold_networks()
        self.batch = torch.randn(batch_size, model.num_input_channels, *patch_size)
        self.steps = steps

    def __call__(self) -> tuple:
        import torch

        start = clocks()
        with torch.no_grad():
            for _ in range(self.steps):
                for net in self.networks:
                    torch.softmax(net(self.batch).float(), 1)
        return elapsed(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--val-iterations", type=int, default=5)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--student", default="unet")
    parser.add_argument("--full-width-student", dest="tiny_student", action="store_false",
                        help="The student at its normal width (default: tiny, the hardest case for overhead).")
    parser.add_argument("--teacher", default="nnunet_plain")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: CPU time is then robust to other load on the machine)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what the final ratios use (both are printed)")
    parser.add_argument("--work", default=None, help="Folder for nnU-Net's folders (default: a temporary one).")
    parser.add_argument("--smoke", action="store_true", help="2 short epochs on 5 cases, for the CI smoke test")
    args = parser.parse_args()
    if args.smoke:
        # The first epoch is dropped; nnU-Net's 5-fold split (fold 1 trains the control) needs 5 cases.
        args.epochs, args.iterations, args.val_iterations, args.cases = 2, 2, 1, 5

    work = Path(args.work or tempfile.mkdtemp(prefix="kt-overhead-"))
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(work / variable)
        (work / variable).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_def_n_proc", "2")

    import torch

    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.nnunet.training_api import augmentation_workers, build_trainer
    from kt_nnunet.training import Budget, TransferSettings, train_plan
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget
    from kt_nnunet.training.offline import nnUNetTrainerKTOffline
    from kt_nnunet.training.online import nnUNetTrainerKTOnline
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.transferring import prepare_transfer

    dataset = 960
    if not (work / "nnUNet_raw" / "Dataset960_Overhead").is_dir():
        tiny_dataset(dataset, "Overhead", num_train=args.cases, num_test=2)
    planned = write_architecture_plans(dataset, args.teacher, budget=Budget(1, 2, 1))
    teacher = train_plan(planned, device="cpu", validate=False, force=True)
    student = dict(budget=Budget(args.epochs, args.iterations, args.val_iterations), tiny=args.tiny_student,
                   force=True, device="cpu")
    offline = prepare_transfer([], dataset, args.student, **student)
    online = prepare_transfer([str(teacher)], dataset, args.student, transfer=TransferSettings("online"), **student)

    torch.set_num_threads(args.threads)
    trainers = {}
    with augmentation_workers(0):
        # "control" is a second stock trainer (fold 1): its ratio to "stock" shows the measurement noise.
        for name, cls, plan, fold in [("stock", nnUNetTrainerKTBudget, offline, 0),
                                      ("offline", nnUNetTrainerKTOffline, offline, 0),
                                      ("online", nnUNetTrainerKTOnline, online, 0),
                                      ("control", nnUNetTrainerKTBudget, offline, 1)]:
            trainers[name] = build_trainer(cls, plan.dataset_name, "2d", fold, plan.plans_name)
            trainers[name].on_train_start()
        config = trainers["online"].configuration_manager
        teacher_forward = TeacherForward(teacher, config.batch_size, config.patch_size,
                                         args.iterations + args.val_iterations)
        jobs = {**{name: (lambda t=t: run_epoch(t)) for name, t in trainers.items()}, "teacher": teacher_forward}
        times = {name: [] for name in jobs}
        names = list(jobs)
        for epoch in range(args.epochs):
            order = names[epoch % len(names):] + names[:epoch % len(names)]
            for name in order:
                times[name].append(jobs[name]())
        for trainer in trainers.values():
            trainer.on_train_end()
    which = {"wall": 0, "cpu": 1}
    medians = {clock: {name: statistics.median(v[i] for v in values[1:]) for name, values in times.items()}
               for clock, i in which.items()}
    print(f"student {args.student}{' (tiny)' if args.tiny_student else ''}, teacher {args.teacher}; "
          f"{args.epochs} epochs (first dropped) x ({args.iterations} train + {args.val_iterations} val iterations), "
          f"batch {config.batch_size}, patch {config.patch_size}, torch threads {args.threads}")
    for clock, i in which.items():
        median = medians[clock]
        for name, values in times.items():
            print(f"{clock:4s} {name:8s} median {median[name]:.3f} s  epochs {[round(v[i], 3) for v in values]}")
        expected = median["stock"] + median["teacher"]
        print(f"{clock:4s} expected online epoch = stock + teacher forward = {expected:.3f} s; "
              f"offline/stock {median['offline'] / median['stock']:.3f}, online/expected "
              f"{median['online'] / expected:.3f}, noise floor control/stock {median['control'] / median['stock']:.3f}")
    median = medians[args.clock]
    print(f"ratios below use {args.clock} time")
    print(f"offline_over_stock={median['offline'] / median['stock']:.3f} "
          f"online_over_expected={median['online'] / (median['stock'] + median['teacher']):.3f}")


if __name__ == "__main__":
    main()
