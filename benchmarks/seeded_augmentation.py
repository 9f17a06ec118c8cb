"""What a repeatable run costs: epoch time with single-threaded augmentation against nnU-Net's worker processes.

    python benchmarks/seeded_augmentation.py [--epochs 5 --iterations 25 --workers 2 --rounds 2] [--smoke]

A seeded kt-nnunet run augments in the training process (``nnUNet_n_proc_DA=0``, nnU-Net's
``SingleThreadedAugmenter``), because nnU-Net's ``NonDetMultiThreadedAugmenter`` hands batches over in
arrival order, which no seed fixes. This trains the demo's first teacher (nnU-Net's ``PlainConvUNet``,
features 16-128) on the demo's source slices with both settings, alternating (0, N, 0, N, ...) so that
load from elsewhere hits both alike, and prints the median epoch time of each (the first epoch of a run is
dropped) and ``single_process_over_workers``, their ratio. It also checks that two seeded runs gave
identical weights, and fails if they did not.

``--smoke``: two epochs (one is timed) of one iteration per run, to check that the script still runs (for the
CI smoke test; the timings mean nothing, the identical-weights check holds as in a full run).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path


def epoch_times(model_folder: Path) -> list[float]:
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    logging = load_checkpoint_safely(model_folder / "fold_0" / "checkpoint_final.pth")["logging"]
    return [end - start for start, end in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 epochs of 1 iteration per run, for the CI smoke test")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.iterations = 2, 1  # the first epoch is dropped: the second is the one timed
    root = Path(tempfile.mkdtemp(prefix="kt-seeded-augmentation-"))
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / variable).mkdir()
        os.environ[variable] = str(root / variable)

    import torch

    from kt_nnunet.data.demo import build_demo
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely
    from kt_nnunet.training import Budget, train_plan
    from kt_nnunet.training.plans import write_architecture_plans

    build_demo(root / "nnUNet_raw", base_id=900)
    budget = Budget(args.epochs, args.iterations, 2)
    times: dict[int, list[float]] = {0: [], args.workers: []}
    weights = []
    for round_ in range(args.rounds):
        for workers in (0, args.workers):
            planned = write_architecture_plans(900, "nnunet_plain", "2d", {"base_features": 16, "max_features": 128},
                                               budget=budget, seed=0)
            folder = train_plan(planned, device="cpu", validate=False, force=True, num_workers=workers)
            times[workers] += epoch_times(folder)[1:]
            if workers == 0:
                weights.append(load_checkpoint_safely(folder / "fold_0" / "checkpoint_final.pth")["network_weights"])
            print(f"round {round_ + 1}, nnUNet_n_proc_DA={workers}: epochs "
                  + " ".join(f"{t:.2f}" for t in epoch_times(folder)), flush=True)
    single, multi = statistics.median(times[0]), statistics.median(times[args.workers])
    identical = all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])
    print(f"median epoch: {single:.2f} s with nnUNet_n_proc_DA=0 (repeatable), {multi:.2f} s with "
          f"nnUNet_n_proc_DA={args.workers} (not repeatable); seeded runs identical: {identical}")
    print(f"single_process_over_workers={single / multi:.3f}")
    if not identical:
        raise SystemExit("two runs with the same seed and nnUNet_n_proc_DA=0 gave different weights")


if __name__ == "__main__":
    main()
