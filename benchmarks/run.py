"""meralign benchmarks: CPU against CLAP, long-file memory, GPU feature extraction, head training.

    python benchmarks/run.py --quick              # CPU parts in a few minutes; GPU part when CUDA is present
    python benchmarks/run.py --full               # 10 / 30 / 60-minute memory runs, more repeats (long)
    python benchmarks/run.py --quick --only cpu memory

Every part writes benchmarks/results/<part>.json (written atomically) with the machine, the thread
count and the load average before and after it ran: numbers from a busy machine are slower, and the
JSON says so. All models are built from configs with random weights (nothing is downloaded): speed
and memory depend on the architecture, not on the weights. One module per part (cpu_vs_clap.py,
long_file_memory.py, gpu_extraction.py, head_training.py); benchmarks/README.md has the method and the
latest table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from common import RESULTS, wait_for_idle, write_result
from cpu_vs_clap import bench_cpu
from gpu_extraction import bench_gpu
from head_training import bench_training, training_child
from long_file_memory import bench_memory, memory_child
from tables import markdown_tables

PARTS = ("cpu", "memory", "gpu", "training")


# -------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs (default): CPU parts in a few minutes")
    mode.add_argument("--full", action="store_true", help="10/30/60-minute memory runs and more repeats (long)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every CPU measurement (both peers)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (CPU levers and GPU part)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each part, wait up to this long for the 1-minute load average to fall below "
        "half the core count (other work on the machine slows every number down)",
    )
    parser.add_argument(
        "--table", action="store_true", help="print the README tables from the results folder and exit"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where the JSON files go (default: %(default)s)"
    )
    parser.add_argument("--gpu-on-cpu", action="store_true", help=argparse.SUPPRESS)  # code-path check of the GPU part
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--training-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    args.quick = not args.full
    args.repeats = 5 if args.full else 2
    args.lever_repeats = 3 if args.full else 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return 0
    if args.training_child:
        training_child(json.loads(args.training_child))
        return 0
    if args.table:
        print(markdown_tables(args.results_dir))
        return 0
    torch.set_num_threads(args.threads)
    runners = {"cpu": bench_cpu, "memory": bench_memory, "gpu": bench_gpu, "training": bench_training}
    names = {"cpu": "cpu_vs_clap", "memory": "long_file_memory", "gpu": "gpu_extraction", "training": "head_training"}
    start = time.perf_counter()
    for part in PARTS:
        if part in args.only:
            print(f"== {part} ==")
            waited = wait_for_idle(args.wait_idle)
            part_start = time.perf_counter()
            result = runners[part](args)
            result["mode"] = "full" if args.full else "quick"
            result["part_seconds"] = round(time.perf_counter() - part_start, 1)
            result["waited_for_idle_seconds"] = round(waited, 1)
            if part == "gpu" and args.gpu_on_cpu:  # a check of the code path, not a measurement: not kept
                print(json.dumps(result, indent=1, default=str)[:4000])
            else:
                # the long --full memory run keeps its own file: a --quick run does not replace its figures
                suffix = "_quick" if part == "memory" and not args.full else ""
                write_result(names[part] + suffix, result, args.results_dir)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
