#!/usr/bin/env python
"""Fetch and cache the TotalSegmentator 2.18.0 reference CT/MR files (pinned sdist, sha256-checked).

    python scripts/fetch_totalsegmentator.py [--cache-dir DIR] [--sdist totalsegmentator-2.18.0.tar.gz] [--force]

Prints the cache folder on success (exit 0). When the fetch is impossible (offline, PyPI unreachable,
checksum mismatch) it prints ``SKIP: <reason>`` and exits with status 3, so CI steps and tests can skip
the real-data checks with a clear reason instead of failing. The logic lives in kt_nnunet.data.fetch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kt_nnunet.data.fetch import TOTALSEG_SHA256, TOTALSEG_VERSION, FetchError, fetch_totalsegmentator  # noqa: E402

EXIT_UNAVAILABLE = 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default $KT_NNUNET_CACHE or ~/.cache/kt-nnunet)")
    parser.add_argument("--sdist", default=None, help=f"a local totalsegmentator-{TOTALSEG_VERSION}.tar.gz to use")
    parser.add_argument("--force", action="store_true", help="fetch again even if the cache is complete")
    args = parser.parse_args(argv)
    try:
        folder = fetch_totalsegmentator(args.cache_dir, sdist=args.sdist, force=args.force)
    except FetchError as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(folder)
    print(f"totalsegmentator=={TOTALSEG_VERSION} sha256={TOTALSEG_SHA256}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
