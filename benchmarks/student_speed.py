"""Student against teacher at real image sizes: stock nnUNetv2_predict, kt-nnunet predict (PyTorch, ONNX).

Usage: python benchmarks/student_speed.py [--cases-2d 2] [--cases-3d 1] [--only 2d|3d] [--smoke] [--keep]

What it does, all on the CPU, in temporary nnU-Net folders, with randomly initialised networks:
1. two synthetic datasets, a 2D 512x512 slice (0.8 mm) and a 3D CT-like volume of 160x160x128 voxels at
   1.5 mm; nnU-Net plans each with its default planner (the teacher: ``PlainConvUNet`` as planned for the
   size, configuration 2d resp. 3d_fullres) and kt-nnunet plans ``light_unet`` on the same plans (the
   student); one fold each, random weights (speed does not depend on them);
2. per model and size, seconds per case for
   * **stock**: ``nnUNetv2_predict -device cpu`` with its defaults (TTA on, ``-npp 3 -nps 3``), a
     subprocess, wall time over the cases (process start-up, model loading and its worker pools included,
     as a user pays them);
   * **lean**: ``kt-nnunet predict`` in this process, PyTorch, TTA off, the model loaded once (loading
     not counted);
   * **onnx**: the same with the ``kt-nnunet export`` ONNX network in ONNX Runtime, TTA off;
   * **bare**: the network's forward on one patch (batch 1, best of 2 after a warm-up) times the number
     of sliding-window patches of one case: the network cost with nothing around it;
   and, for the teacher, lean with TTA on (the cost of mirroring on the lean path).
3. The last line holds the ratios of the 3D case, measured in this run:
   ``student_speedup_vs_teacher`` = teacher lean / student lean (same predictor settings, TTA off);
   ``lean_over_bare_forward`` = student lean / student bare; ``onnx_speedup_vs_torch`` = student lean /
   student onnx; ``student_lean_vs_teacher_stock`` = teacher stock / student lean.

``--smoke`` runs the same steps at 32x32 and 16x16x16, one case each, and stock ``nnUNetv2_predict`` without
its worker pools (``-npp 0 -nps 0``: starting 6 workers that each import nnU-Net took longer than the rest of
the run); to check that the script still runs (for the CI smoke test; the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

SIZES = {"2d": {"shape": (512, 512), "spacing": (0.8, 0.8), "id": 980},
         "3d_fullres": {"shape": (128, 160, 160), "spacing": (1.5, 1.5, 1.5), "id": 981}}
SMOKE_SIZES = {"2d": {"shape": (32, 32), "spacing": (1.0, 1.0), "id": 980},
               "3d_fullres": {"shape": (16, 16, 16), "spacing": (1.5, 1.5, 1.5), "id": 981}}


def log(message: str) -> None:
    print(message, flush=True)


def bin_of(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name) or name


def random_model_folder(folder: Path, plans: dict, configuration: str, dataset_json: dict) -> Path:
    """A model folder as nnUNetv2_train leaves it, with randomly initialised weights (fold 0)."""
    import numpy as np
    import torch

    from kt_nnunet.nnunet.model_folder import TrainedModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=1))
    model = TrainedModel(folder, plans, dataset_json, configuration, (0,), "checkpoint_final.pth", "nnUNetTrainer",
                         None, [])
    torch.manual_seed(0)
    network = model.build_network()
    (folder / "fold_0").mkdir(exist_ok=True)
    dim = len(plans["configurations"][configuration]["patch_size"])
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer", "_best_ema": np.float32(0),
                "init_args": {"configuration": configuration, "fold": 0},
                "inference_allowed_mirroring_axes": tuple(range(dim))}, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def set_up(configuration: str, size: dict, cases: int) -> dict:
    from kt_nnunet.data import ShapeConfig, synth_dataset
    from kt_nnunet.nnunet.planning import load_plans
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.nnunet.paths import results_folder

    start = time.perf_counter()
    raw = synth_dataset(size["id"], f"Speed{configuration}", num_train=2, num_test=cases, seed=1, force=True,
                        shapes=ShapeConfig(shape=size["shape"], spacing=size["spacing"], num_classes=3,
                                           radius_mm=0.25 * min(a * s for a, s in zip(size["shape"], size["spacing"]))))
    student_plans = write_architecture_plans(size["id"], "light_unet", configuration, force=True)
    teacher = load_plans(raw.name)
    if configuration not in teacher["configurations"]:
        raise SystemExit(f"nnU-Net planned no {configuration} for {raw.name}: {sorted(teacher['configurations'])}")
    student = json.loads(student_plans.plans_file.read_text())
    dataset_json = json.loads((raw / "dataset.json").read_text())
    folders = {}
    for role, plans in (("teacher", teacher), ("student", student)):
        folders[role] = random_model_folder(results_folder() / raw.name / f"nnUNetTrainer__{plans['plans_name']}__"
                                            f"{configuration}", plans, configuration, dataset_json)
    print(f"{configuration}: {size['shape']} at {size['spacing']} mm, {cases} case(s), set up in "
        f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return {"raw": raw, "images": raw / "imagesTs", "folders": folders, "cases": cases}


def stock_seconds(setup: dict, role: str, out: Path, worker_options: Sequence[str] = ()) -> float:
    folder = setup["folders"][role]
    trainer, plans, configuration = folder.name.split("__")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([bin_of("nnUNetv2_predict"), "-i", str(setup["images"]), "-o", str(out), "-d",
                           setup["raw"].name, "-tr", trainer, "-p", plans, "-c", configuration, "-f", "0",
                           "-device", "cpu", "--disable_progress_bar", *worker_options], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"nnUNetv2_predict failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall / setup["cases"]


def lean_seconds(predictor, setup: dict, out: Path, rounds: int = 1) -> float:
    from kt_nnunet.deploy.predict import predict

    best = math.inf
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        result = predict(None, setup["images"], out, predictor=predictor)
        best = min(best, result.seconds / len(result.cases))
    return best


def patches_per_case(predictor, image_file: Path) -> int:
    """Sliding-window positions of one preprocessed case (as the predictor computes them)."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, _ = preprocessor.run_case([str(image_file)], None, predictor.plans_manager,
                                       predictor.configuration_manager, predictor.dataset_json)
    padded = pad_nd_image(data, predictor.configuration_manager.patch_size, "constant", {"value": 0}, False)
    return len(predictor._internal_get_sliding_window_slicers(padded.shape[1:]))


def bare_forward_per_patch(network, predictor, threads: int) -> float:
    import torch

    patch = predictor.configuration_manager.patch_size
    x = torch.randn((1, predictor.model.num_input_channels, *patch))
    torch.set_num_threads(threads)
    times = []
    with torch.inference_mode():
        network(x)  # warm-up: one-off allocations and kernel selection
        for _ in range(2):
            start = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - start)
    return min(times)


def measure(configuration: str, setup: dict, work: Path, stock_worker_options: Sequence[str] = ()) -> dict:
    from kt_nnunet.deploy.export import export_model
    from kt_nnunet.deploy.predict import load_predictor
    from kt_nnunet.nnunet.evaluation import count_parameters

    numbers = {}
    first_image = sorted(setup["images"].glob("*_0000.nii.gz"))[0]
    for role in ("student", "teacher"):
        folder = setup["folders"][role]
        row = {}
        predictor = load_predictor(folder, tta=False)
        row["params"] = count_parameters(predictor.fold_networks[0])
        row["patch"] = list(predictor.configuration_manager.patch_size)
        row["patches"] = patches_per_case(predictor, first_image)
        row["bare_per_patch"] = bare_forward_per_patch(predictor.fold_networks[0], predictor, predictor.threads)
        row["bare"] = row["bare_per_patch"] * row["patches"]
        rounds = 2 if role == "student" else 1
        forward_before = predictor.forward_seconds
        row["lean"] = lean_seconds(predictor, setup, work / f"lean_{role}", rounds)
        row["lean_forward"] = (predictor.forward_seconds - forward_before) / (setup["cases"] * rounds)
        exported = export_model(folder, work / f"{configuration}_{role}" / "network.onnx")
        onnx_predictor = load_predictor(exported.networks[0], tta=False)
        row["onnx"] = lean_seconds(onnx_predictor, setup, work / f"onnx_{role}", rounds)
        if role == "teacher":
            predictor.use_mirroring = True
            row["lean_tta"] = lean_seconds(predictor, setup, work / f"lean_tta_{role}")
        row["stock"] = stock_seconds(setup, role, work / f"stock_{role}", stock_worker_options)
        numbers[role] = row
        log(f"  {configuration} {role}: {row['params'] / 1e6:.2f} M parameters, patch {row['patch']} x "
            f"{row['patches']}; s/case: stock (TTA on) {row['stock']:.2f}, lean {row['lean']:.2f}"
            + (f", lean TTA on {row['lean_tta']:.2f}" if "lean_tta" in row else "")
            + f", onnx {row['onnx']:.2f}, bare forward {row['bare']:.2f} ({row['bare_per_patch']:.3f} per patch; "
            f"network calls inside lean {row['lean_forward']:.2f})")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases-2d", type=int, default=2)
    parser.add_argument("--cases-3d", type=int, default=1)
    parser.add_argument("--only", choices=("2d", "3d"), default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one case each, for the CI smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args()
    if args.smoke:
        args.cases_2d = args.cases_3d = 1
    stock_worker_options = ("-npp", "0", "-nps", "0") if args.smoke else ()
    work = Path(tempfile.mkdtemp(prefix="kt-speed-bench-")).absolute()
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / variable).mkdir()
        os.environ[variable] = str(work / variable)
    os.environ.setdefault("nnUNet_def_n_proc", "1")  # our planning runs in process; stock predict keeps defaults
    sizes = SMOKE_SIZES if args.smoke else SIZES
    chosen = [c for c in sizes if args.only is None or c.startswith(args.only)]
    results = {}
    try:
        log(f"work folder {work}; {os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.2f}")
        for configuration in chosen:
            cases = args.cases_2d if configuration == "2d" else args.cases_3d
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's planner prints every configuration
                setup = set_up(configuration, sizes[configuration], cases)
            results[configuration] = measure(configuration, setup, work / configuration, stock_worker_options)
        for configuration, numbers in results.items():
            s, t = numbers["student"], numbers["teacher"]
            log(f"{configuration}: student_speedup_vs_teacher={t['lean'] / s['lean']:.2f} "
                f"(bare forward {t['bare'] / s['bare']:.2f}) lean_over_bare_forward={s['lean'] / s['bare']:.2f} "
                f"(teacher {t['lean'] / t['bare']:.2f}) onnx_speedup_vs_torch={s['lean'] / s['onnx']:.2f} "
                f"(teacher {t['lean'] / t['onnx']:.2f}) student_speedup_vs_teacher_onnx={t['onnx'] / s['onnx']:.2f} "
                f"tta_cost_teacher={t['lean_tta'] / t['lean']:.2f} "
                f"student_lean_vs_teacher_stock={t['stock'] / s['lean']:.2f} "
                f"stock_over_lean_teacher={t['stock'] / t['lean']:.2f}")
        log(f"load average after: {os.getloadavg()[0]:.2f}")
        s, t = results[chosen[-1]]["student"], results[chosen[-1]]["teacher"]
        print(f"student_speedup_vs_teacher={t['lean'] / s['lean']:.2f} "
              f"lean_over_bare_forward={s['lean'] / s['bare']:.2f} onnx_speedup_vs_torch={s['lean'] / s['onnx']:.2f} "
              f"student_lean_vs_teacher_stock={t['stock'] / s['lean']:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
