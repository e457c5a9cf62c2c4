"""`python -m cuda_ext [build] [--cpu-only] [--verbose]`: compile the kernels into the cache and report."""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m cuda_ext", description=__doc__)
    parser.add_argument("command", nargs="?", default="build", choices=["build", "status"])
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.cpu_only:
        os.environ["AVS_EXT_CUDA"] = "0"

    from cuda_ext import build

    with_cuda = build.cuda_buildable()
    if args.command == "build":
        start = time.perf_counter()
        try:
            path = build.build(with_cuda, verbose=args.verbose)
        except Exception as exc:  # report compiler failures as a clear one-line error
            print(f"cuda_ext: build failed: {exc}", file=sys.stderr)
            return 1
        print(f"cuda_ext: {'CPU + CUDA (' + build.arch_list() + ')' if with_cuda else 'CPU'} kernels at {path} "
              f"({time.perf_counter() - start:.0f} s)")
    from cuda_ext import backend

    print(f"cuda_ext: cpu -> {backend('cpu')}, cuda -> {backend('cuda')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
