"""Teacher-labelling throughput: kt-nnunet against stock nnU-Net's predict + ensemble, in one run.

Usage: python benchmarks/label_throughput.py [--3d] [--images 10] [--repeats 1] [--workdir DIR [--reuse]] [--keep]
       [--smoke]

``--3d`` runs the same comparison in ``3d_fullres``: 3D teachers trained on 32x48x48 volumes label 32x48x48
transferal volumes (TTA mirrors 8 ways instead of 4), the memory probe uses 2 volumes of 128x192x192 at
0.25 mm (32x48x48 at 1 mm for the teachers), and a last detail line gives the 3D seconds per case of
nnU-Net's default teacher and of the light student (nnU-Net's predictor, TTA on and off).

What it does, all on the CPU, in temporary nnU-Net folders:
1. trains 5 teachers of different architectures (nnU-Net's PlainConvUNet, SegResNet from the third-party
   plugin, attention U-Net, then kt's U-Net and light U-Net) on a 64x64 synthetic dataset, at full
   width, with a tiny budget (their quality does not matter here, only their cost);
2. **stock**: 3 x ``nnUNetv2_predict --save_probabilities -npp 0 -nps 0 -device cpu`` (the first 3
   teachers) + ``nnUNetv2_ensemble``, each a subprocess, on N transferal images; **kt**: one
   ``kt-nnunet label`` subprocess with the same 3 teachers (mean fusion, TTA on in both);
   ``speedup_vs_stock`` = stock wall / kt wall (process start-up included on both sides);
3. ``label_agreement``: fraction of voxels where kt's labels equal the stock ensemble's;
4. ``wall_over_bare_forward``: in one process with the teachers loaded, ``Labeller.run`` wall time
   over the bare forward time of the same teachers on the same images (``predict_logits_from_
   preprocessed_data`` on already preprocessed tensors: the sliding-window network passes with TTA and
   nothing else). The best of at least 2 rounds of each; the bare forward time is the lower of the one
   measured alone and the one measured inside the run (so CPU contention that slows the separate
   measurement cannot make the ratio look better);
5. ``peak_mem_k5_over_k1``: peak working memory of labelling with 5 teachers over that with 1, each in
   a fresh process, on 2 large images (1024x1024 at 0.0625 mm, which the teachers see as 64x64 at 1 mm,
   so every teacher's probability map in the image's geometry is 12 MB: the case where holding one map
   per teacher would show). Working memory is the peak RSS during ``Labeller.run`` minus the RSS after
   the teachers were loaded and warmed up on one 64x64 crop (their weights and one-time kernel caches are
   resident for the whole run by design, and are excluded); glibc's mmap threshold is fixed so that RSS
   follows live data. Detail lines also give 2 teachers on the large images and 1 / 5 teachers on the
   64x64 images (where the networks' activations dominate).

The last line is exactly
``speedup_vs_stock=<x> label_agreement=<fraction> peak_mem_k5_over_k1=<y> wall_over_bare_forward=<z>``.

``--smoke`` runs the same steps on 2 transferal images with tiny teachers trained for one iteration, large
images of 128x128 at 0.5 mm (3D: 16x32x32 teachers, 32x64x64 at 0.5 mm) and one round of each in-process
timing, to check that the script still runs (for the CI smoke test; the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kt_nnunet.training.settings import Budget  # imports neither torch nor nnU-Net
from kt_nnunet.teachers.methods import FusionSettings  # imports neither torch nor nnU-Net

# The first 3 label in the speed comparison; all 5 in the k=5 memory probe.
ARCHITECTURES = ("nnunet_plain", "segresnet", "attention_unet", "unet", "light_unet")
BUDGET = Budget(epochs=1, iterations_per_epoch=3, val_iterations_per_epoch=1)
SOURCE_ID, TRANSFER_ID, BIG_ID = 970, 971, 972
CONFIGURATION = "2d"  # "3d_fullres" with --3d
SHAPES = {"2d": {"case": (64, 64), "big": (1024, 1024), "big_spacing": (0.0625, 0.0625)},
          "3d_fullres": {"case": (32, 48, 48), "big": (128, 192, 192), "big_spacing": (0.25, 0.25, 0.25)}}
# The 2D teachers train on tiny_dataset's 64x64 images in both modes; "big" stays 64x64 to the teachers.
SMOKE_SHAPES = {"2d": {"case": (64, 64), "big": (128, 128), "big_spacing": (0.5, 0.5)},
                "3d_fullres": {"case": (16, 32, 32), "big": (32, 64, 64), "big_spacing": (0.5, 0.5, 0.5)}}
SMOKE_BUDGET = Budget(epochs=1, iterations_per_epoch=1, val_iterations_per_epoch=1)


def log(message: str) -> None:
    print(message, flush=True)


def run(command, env, label):
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{label} failed ({' '.join(map(str, command))}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return wall


def bin_of(name: str) -> str:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name) or name


# ------------------------------------------------------------------------------------------ set-up
def set_up(work: Path, num_images: int, shapes: dict, budget: Budget = BUDGET, tiny: bool = False,
           reuse: bool = False) -> dict:
    from kt_nnunet.data import ShapeConfig, synth_dataset, tiny_dataset
    from kt_nnunet.training import train_plan
    from kt_nnunet.training.plans import write_architecture_plans

    case_shape = ShapeConfig(shape=shapes["case"], num_classes=3, radius_mm=10.0 if len(shapes["case"]) == 3 else 18.0)
    if CONFIGURATION == "2d":
        source = tiny_dataset(SOURCE_ID, "BenchSource", num_train=6, num_test=0, force=True)
    else:
        source = synth_dataset(SOURCE_ID, "BenchSource", num_train=6, num_test=0, seed=4, shapes=case_shape, force=True)
    transfer = synth_dataset(TRANSFER_ID, "BenchTransfer", num_train=num_images, num_test=0, seed=5,
                             shapes=case_shape, labelled=False, force=True)
    big = synth_dataset(BIG_ID, "BenchBig", out=work / "big", num_train=2, num_test=0, seed=6, labelled=False,
                        shapes=ShapeConfig(shape=shapes["big"], spacing=shapes["big_spacing"], num_classes=3,
                                           radius_mm=case_shape.radius_mm), force=True)
    teachers = []
    for arch in ARCHITECTURES:
        start = time.perf_counter()
        planned = write_architecture_plans(SOURCE_ID, arch, CONFIGURATION, tiny=tiny, budget=budget, force=True)
        model = planned.model_folder()
        if not (reuse and (model / "fold_0" / "checkpoint_final.pth").is_file()):
            model = train_plan(planned, device="cpu", validate=False, force=True)
            log(f"teacher {arch}: trained in {time.perf_counter() - start:.1f} s ({model.name})")
        teachers.append({"arch": arch, "folder": model, "plans": planned.plans_name, "trainer": planned.trainer})
    return {"source": source, "transfer": transfer, "big": big, "teachers": teachers}


# ------------------------------------------------------------------------------------------ stock vs kt
def stock_path(setup: dict, work: Path, env: dict) -> float:
    out = work / "stock"
    shutil.rmtree(out, ignore_errors=True)
    walls = []
    folders = []
    for i, teacher in enumerate(setup["teachers"][:3]):
        folder = out / f"teacher{i}"
        folders.append(folder)
        walls.append(run([bin_of("nnUNetv2_predict"), "-i", setup["transfer"] / "imagesTr", "-o", folder, "-d",
                          str(SOURCE_ID), "-c", CONFIGURATION, "-p", teacher["plans"], "-tr", teacher["trainer"], "-f",
                          "0", "--save_probabilities", "-device", "cpu", "-npp", "0", "-nps", "0"], env,
                         "nnUNetv2_predict"))
    walls.append(run([bin_of("nnUNetv2_ensemble"), "-i", *folders, "-o", out / "ensemble", "-np", "1"], env,
                     "nnUNetv2_ensemble"))
    log("  stock: " + ", ".join(f"predict {t['arch']} {w:.1f} s" for t, w in zip(setup["teachers"][:3], walls))
        + f", ensemble {walls[-1]:.1f} s")
    return sum(walls)


def kt_path(setup: dict, work: Path, env: dict) -> float:
    out = work / "kt" / "Dataset973_BenchLabels"
    shutil.rmtree(out.parent, ignore_errors=True)
    command = [bin_of("kt-nnunet"), "label", "--images", setup["transfer"], "--out", out, "--device", "cpu",
               "--no-progress"]
    for teacher in setup["teachers"][:3]:
        command += ["--teacher", teacher["folder"]]
    wall = run(command, env, "kt-nnunet label")
    log(f"  kt-nnunet label: {wall:.1f} s")
    return wall


def agreement(work: Path) -> float:
    import SimpleITK as sitk

    equal = total = 0
    for ours in sorted((work / "kt" / "Dataset973_BenchLabels" / "labelsTr").iterdir()):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(ours)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "stock" / "ensemble" / ours.name)))
        equal += int((a == b).sum())
        total += a.size
    return equal / total


# ------------------------------------------------------------------------------------------ overhead
def overhead(setup: dict, work: Path, repeats: int) -> tuple[float, float, float, list]:
    """(best Labeller.run wall, best bare forward, forward time inside the best run, per-teacher forward)."""
    from kt_nnunet.labelling import Labeller
    from kt_nnunet.labelling.images import resolve_images
    from kt_nnunet.nnunet.raw_dataset import read_images

    labeller = Labeller([t["folder"] for t in setup["teachers"][:3]], device="cpu")
    # Model-folder teachers: each predicts through nnU-Net's code in its own TeacherInference.
    inferences = [teacher.inference for teacher in labeller.teachers]
    images = resolve_images(setup["transfer"])
    preprocessed = []
    for files in images.cases.values():
        image, properties = read_images(files, reader=labeller.reader_writer)
        preprocessed.append([inference.preprocess(image, properties)[0] for inference in inferences])
    for inference, data in zip(inferences, preprocessed[0]):  # warm-up
        inference.predict_logits(data)
    best_run, best_forward, forward_in_run, per_teacher = float("inf"), float("inf"), None, None
    for repeat in range(repeats):
        for inference in inferences:
            inference.forward_seconds = 0.0
        start = time.perf_counter()
        for case in preprocessed:
            for inference, data in zip(inferences, case):
                inference.predict_logits(data)
        elapsed = time.perf_counter() - start
        if elapsed < best_forward:
            best_forward = elapsed
            per_teacher = [inference.forward_seconds for inference in inferences]
        out = work / "overhead" / f"Dataset{974 + repeat}_Overhead"
        shutil.rmtree(out, ignore_errors=True)
        result = labeller.run(images, out, progress=False)
        if result.wall_seconds < best_run:
            best_run, forward_in_run = result.wall_seconds, result.forward_seconds
    return best_run, best_forward, forward_in_run, per_teacher


# ------------------------------------------------------------------------------------------ memory
def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_probe(teachers: list, images: str, out: str) -> None:
    """Run in a fresh process: print the peak working memory (MiB) of labelling ``images``."""
    from kt_nnunet.labelling import Labeller
    from kt_nnunet.labelling.images import resolve_images
    from kt_nnunet.nnunet.raw_dataset import read_images

    labeller = Labeller(teachers, device="cpu", fusion=FusionSettings(tta=False))
    # Warm-up on a 64x64 crop: each network's one-time lazy allocations (kernel caches) belong to loading it.
    transferal = resolve_images(images)
    image, properties = read_images(next(iter(transferal.cases.values())), reader=labeller.reader_writer)
    depth = slice(None) if image.shape[1] == 1 else slice(0, 64)  # 2D images are (C, 1, Y, X)
    crop = image[(slice(None), depth, slice(0, 64), slice(0, 64))].copy()
    labeller.label_image(crop, dict(properties))
    del image, crop
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    baseline = _status_kb("VmRSS")
    labeller.run(transferal, out, progress=False)
    peak = _status_kb("VmHWM")
    print(json.dumps({"working_mib": (peak - baseline) / 1024, "baseline_mib": baseline / 1024}))


def peak_memory(setup: dict, images: Path, work: Path, env: dict, ks=(1, 5)) -> dict:
    """Working MiB per number of teachers, each in a fresh process.

    ``MALLOC_MMAP_THRESHOLD_`` is fixed so that glibc returns freed buffers to the system instead of
    keeping them in its heap (its default threshold adapts upwards after the first large free), so the
    peak RSS follows live data rather than the allocator's hoarding.
    """
    results = {}
    probe_env = dict(env, MALLOC_MMAP_THRESHOLD_="65536")
    for k in ks:
        teachers = [str(t["folder"]) for t in setup["teachers"][:k]]
        out = work / "memory" / f"Dataset{980 + k}_Memory"
        shutil.rmtree(out, ignore_errors=True)
        probe = subprocess.run([sys.executable, __file__, "--memory-probe", json.dumps(teachers), str(images),
                                str(out)], env=probe_env, capture_output=True, text=True)
        if probe.returncode != 0:
            raise SystemExit(f"memory probe failed:\n{probe.stdout[-2000:]}\n{probe.stderr[-3000:]}")
        results[k] = json.loads(probe.stdout.strip().splitlines()[-1])["working_mib"]
    return results


# ------------------------------------------------------------------------------------------ per case
def seconds_per_case(setup: dict, rounds: int = 3) -> dict:
    """Seconds per transferal case of nnU-Net's default teacher and of the light student through nnU-Net's
    predictor (preprocessing, sliding window, resampling back), TTA on and off; the best of ``rounds``."""
    from kt_nnunet.labelling.images import resolve_images
    from kt_nnunet.nnunet import evaluation as nnunet_eval
    from kt_nnunet.nnunet.model_folder import load_trained_model, make_predictor

    cases = list(resolve_images(setup["transfer"]).cases.values())[:3]
    out = {}
    for teacher in setup["teachers"]:
        if teacher["arch"] not in ("nnunet_plain", "light_unet"):
            continue
        model = load_trained_model(teacher["folder"], [0])
        for tta in (True, False):
            predictor = make_predictor(model, use_mirroring=tta)
            nnunet_eval.predict_case(predictor, cases[0])  # warm-up
            best = min(sum(nnunet_eval.predict_case(predictor, case)[2] for case in cases) / len(cases)
                       for _ in range(rounds))
            out[(teacher["arch"], tta)] = best
    return out


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10, help="number of 64x64 transferal images")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the timed comparisons (best is kept)")
    parser.add_argument("--workdir", default=None, help="keep everything here instead of a temporary folder")
    parser.add_argument("--keep", action="store_true", help="do not delete the temporary folder")
    parser.add_argument("--reuse", action="store_true", help="with --workdir: reuse teachers trained by a former run")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="3d_fullres teachers on 3D volumes")
    parser.add_argument("--smoke", action="store_true", help="2 images, tiny teachers, small large images, one "
                                                             "timing round: for the CI smoke test")
    parser.add_argument("--memory-probe", nargs=3, metavar=("TEACHERS_JSON", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.images, args.repeats = 2, 1
    shapes = (SMOKE_SHAPES if args.smoke else SHAPES)["3d_fullres" if args.three_d else "2d"]
    global CONFIGURATION
    CONFIGURATION = "3d_fullres" if args.three_d else "2d"
    if args.memory_probe:
        memory_probe(json.loads(args.memory_probe[0]), args.memory_probe[1], args.memory_probe[2])
        return

    from kt_nnunet.nnunet.ext_trainers import EXT_TRAINER_FOLDER

    work = Path(args.workdir or tempfile.mkdtemp(prefix="kt-label-bench-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(work / variable)
        (work / variable).mkdir(exist_ok=True)
    os.environ["nnUNet_def_n_proc"] = str(os.cpu_count() or 1)
    env = dict(os.environ, nnUNet_extTrainer=str(EXT_TRAINER_FOLDER))
    env.pop("nnUNet_n_proc_DA", None)
    try:
        size, big_size = "x".join(map(str, shapes["case"])), "x".join(map(str, shapes["big"]))
        log(f"work folder {work}; {CONFIGURATION}; {args.images} transferal images of {size}; {os.cpu_count()} CPU(s)")
        setup = set_up(work, args.images, shapes, SMOKE_BUDGET if args.smoke else BUDGET, tiny=args.smoke,
                       reuse=args.reuse)
        stock_walls, kt_walls = [], []
        for _ in range(args.repeats):  # alternating, so that a busy spell of the machine hits both sides
            stock_walls.append(stock_path(setup, work, env))
            kt_walls.append(kt_path(setup, work, env))
        stock_wall, kt_wall = min(stock_walls), min(kt_walls)
        log(f"stock 3 x nnUNetv2_predict + nnUNetv2_ensemble: {stock_wall:.1f} s; kt-nnunet label: {kt_wall:.1f} s")
        fraction = agreement(work)
        rounds = 1 if args.smoke else max(2, args.repeats)
        run_wall, bare_forward, forward_in_run, per_teacher = overhead(setup, work, rounds)
        log(f"in one process: Labeller.run {run_wall:.2f} s, bare forward of the 3 teachers {bare_forward:.2f} s "
            f"(forward inside that run: {forward_in_run:.2f} s; per teacher: "
            + ", ".join(f"{t['arch']} {s:.2f} s" for t, s in zip(setup["teachers"], per_teacher)) + ")")
        small = peak_memory(setup, setup["transfer"], work, env, ks=(1, 5))
        log(f"memory, {args.images} images of {size}: working {small[1]:.1f} MiB with 1 teacher, {small[5]:.1f} MiB "
            f"with 5 (ratio {small[5] / small[1]:.3f})")
        big = peak_memory(setup, setup["big"], work, env, ks=(1, 2, 5))
        log(f"memory, 2 images of {big_size}: working {big[1]:.1f} / {big[2]:.1f} / {big[5]:.1f} MiB with 1 / 2 / 5 "
            f"teachers (k5/k2 {big[5] / big[2]:.3f})")
        per_case = seconds_per_case(setup, rounds=1 if args.smoke else 3)
        log(f"seconds per case ({CONFIGURATION}, nnU-Net's predictor): nnunet_plain teacher "
            f"{per_case[('nnunet_plain', True)]:.3f} (TTA) / {per_case[('nnunet_plain', False)]:.3f} (no TTA), "
            f"light_unet {per_case[('light_unet', True)]:.3f} / {per_case[('light_unet', False)]:.3f}; student "
            f"speed-up {per_case[('nnunet_plain', True)] / per_case[('light_unet', True)]:.2f}x with TTA, "
            f"{per_case[('nnunet_plain', False)] / per_case[('light_unet', False)]:.2f}x without")
        print(f"speedup_vs_stock={stock_wall / kt_wall:.2f} label_agreement={fraction:.6f} "
              f"peak_mem_k5_over_k1={big[5] / big[1]:.3f} "
              f"wall_over_bare_forward={run_wall / min(bare_forward, forward_in_run):.3f}")
    finally:
        if not (args.workdir or args.keep):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
