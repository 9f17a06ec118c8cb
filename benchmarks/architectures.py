"""Parameters and CPU forward time of every registered architecture, against nnU-Net's default network.

Usage: python benchmarks/architectures.py [--repeats 3] [--no-3d] [--only a,b] [--smoke]

Geometry: nnU-Net's default 2D plan for 256x256 (7 stages) and 3D plan for 64^3 (5 stages), batch 1,
1 input channel, 3 classes, each architecture at its default size, deep supervision off (inference).
The ratio columns divide by `nnunet_plain` (PlainConvUNet as nnU-Net plans it) measured in the same run,\nround-robin (one forward of each architecture per round), so background load affects all alike.

``--smoke``: one round on small plans, 64x64 (5 stages) and 32x32x64 (4 stages), to check that the script
still runs (for the CI smoke test; the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from kt_nnunet.architectures.reference import (REFERENCE_2D, REFERENCE_3D, REFERENCE_INPUT_CHANNELS,
                                               REFERENCE_NUM_CLASSES, parameter_count)
from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.registry import list_architectures

BASELINE = "nnunet_plain"
# The smallest plans every registered architecture takes: SwinUNETR downsamples 32x, and a 1-voxel bottleneck
# cannot be instance-normalised, so one 3D axis needs 64 (as in the monai plugin's conformance test).
SMOKE_2D = PlanGeometry.default((64, 64), 5)
SMOKE_3D = PlanGeometry.default((32, 32, 64), 4)


def build(spec, geometry):
    torch.manual_seed(0)
    network = spec.build(REFERENCE_INPUT_CHANNELS, REFERENCE_NUM_CLASSES, geometry).eval()
    return network, torch.randn(1, REFERENCE_INPUT_CHANNELS, *geometry.patch_size)


def forward_seconds(specs, geometry, repeats: int) -> dict:
    """Median forward time per architecture, timed round-robin so background load hits all of them alike."""
    cases = {spec.name: build(spec, geometry) for spec in specs}
    times = {name: [] for name in cases}
    with torch.inference_mode():
        for network, x in cases.values():
            network(x)  # warm-up: allocator and kernel selection
        for _ in range(repeats):
            for name, (network, x) in cases.items():
                start = time.perf_counter()
                network(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D timings")
    parser.add_argument("--only", default=None, help="comma-separated architecture names (baseline always runs)")
    parser.add_argument("--smoke", action="store_true", help="one round at 64x64 and 32x32x64, for the CI smoke test")
    args = parser.parse_args()
    geometry_2d, geometry_3d = (SMOKE_2D, SMOKE_3D) if args.smoke else (REFERENCE_2D, REFERENCE_3D)
    if args.smoke:
        args.repeats = 1

    specs = list_architectures()
    if args.only:
        wanted = set(args.only.split(",")) | {BASELINE}
        specs = [s for s in specs if s.name in wanted]
    t2d = forward_seconds([s for s in specs if 2 in s.dims], geometry_2d, args.repeats)
    print("measured 2D", flush=True)
    t3d = {} if args.no_3d else forward_seconds([s for s in specs if 3 in s.dims], geometry_3d, args.repeats)
    rows = [{"name": s.name, "plugin": s.plugin, "params": parameter_count(s) if 2 in s.dims else None,
             "t2d": t2d.get(s.name), "t3d": t3d.get(s.name)} for s in specs]

    base = next(r for r in rows if r["name"] == BASELINE)
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"  # noqa: E731
    fmt = lambda v, scale, unit: f"{v * scale:.2f}{unit}" if v is not None else "-"  # noqa: E731
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; 2D {list(geometry_2d.patch_size)}, "
          f"3D {list(geometry_3d.patch_size)}; ratios against {BASELINE}\n")
    print("| architecture | plugin | params | params ratio | 2D forward | 2D ratio | 3D forward | 3D ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['plugin']} | {fmt(r['params'], 1e-6, ' M')} | {ratio(r['params'], base['params'])} "
              f"| {fmt(r['t2d'], 1e3, ' ms')} | {ratio(r['t2d'], base['t2d'])} "
              f"| {fmt(r['t3d'], 1e3, ' ms')} | {ratio(r['t3d'], base['t3d'])} |")


if __name__ == "__main__":
    main()
