"""Parameters and CPU forward time of every registered architecture, against nnU-Net's default network.

Usage: python benchmarks/architectures.py [--repeats 3] [--no-3d] [--only a,b]

Geometry: nnU-Net's default 2D plan for 256x256 (7 stages) and 3D plan for 64^3 (5 stages), batch 1,
1 input channel, 3 classes, each architecture at its default size, deep supervision off (inference).
The ratio columns divide by `nnunet_plain` (PlainConvUNet as nnU-Net plans it) measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from kt_nnunet.architectures.reference import (REFERENCE_2D, REFERENCE_3D, REFERENCE_INPUT_CHANNELS,
                                               REFERENCE_NUM_CLASSES, parameter_count)
from kt_nnunet.registry import list_architectures

BASELINE = "nnunet_plain"


def forward_seconds(spec, geometry, repeats: int) -> float:
    torch.manual_seed(0)
    network = spec.build(REFERENCE_INPUT_CHANNELS, REFERENCE_NUM_CLASSES, geometry).eval()
    x = torch.randn(1, REFERENCE_INPUT_CHANNELS, *geometry.patch_size)
    times = []
    with torch.inference_mode():
        network(x)  # warm-up: allocator and kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D timings")
    parser.add_argument("--only", default=None, help="comma-separated architecture names (baseline always runs)")
    args = parser.parse_args()

    specs = list_architectures()
    if args.only:
        wanted = set(args.only.split(",")) | {BASELINE}
        specs = [s for s in specs if s.name in wanted]
    rows = []
    for spec in specs:
        row = {"name": spec.name, "plugin": spec.plugin, "params": parameter_count(spec) if 2 in spec.dims else None}
        row["t2d"] = forward_seconds(spec, REFERENCE_2D, args.repeats) if 2 in spec.dims else None
        row["t3d"] = (forward_seconds(spec, REFERENCE_3D, args.repeats)
                      if 3 in spec.dims and not args.no_3d else None)
        rows.append(row)
        print(f"measured {spec.name}", flush=True)

    base = next(r for r in rows if r["name"] == BASELINE)
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"  # noqa: E731
    fmt = lambda v, scale, unit: f"{v * scale:.2f}{unit}" if v is not None else "-"  # noqa: E731
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; 2D {list(REFERENCE_2D.patch_size)}, "
          f"3D {list(REFERENCE_3D.patch_size)}; ratios against {BASELINE}\n")
    print("| architecture | plugin | params | params ratio | 2D forward | 2D ratio | 3D forward | 3D ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['plugin']} | {fmt(r['params'], 1e-6, ' M')} | {ratio(r['params'], base['params'])} "
              f"| {fmt(r['t2d'], 1e3, ' ms')} | {ratio(r['t2d'], base['t2d'])} "
              f"| {fmt(r['t3d'], 1e3, ' ms')} | {ratio(r['t3d'], base['t3d'])} |")


if __name__ == "__main__":
    main()
