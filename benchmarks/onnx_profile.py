"""Where the float32 ONNX audio model's time goes: ONNX Runtime's profiler, by operator type, on one 10 s segment.

    python benchmarks/onnx_profile.py            # uses (or exports) space_path.py's MERT-95M-shaped model folder

Each large operator's arithmetic rate is set against a 2048 x 2048 float32 torch.mm measured in the same run:
when the MatMuls and convolutions already run near that rate, float32 has no more to give and the remaining
time is the memory-bound operators between them. Writes benchmarks/results/onnx_profile.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from common import environment, matmul_gflops, write_result  # noqa: E402
from space_path import prepare_folder  # noqa: E402

SAMPLES = 240_000  # one 10 s segment at 24 kHz


def profile(model_file: Path, runs: int, prefix: str) -> tuple[dict, float]:
    """{op type: seconds per run} over `runs` profiled runs after a warm-up, and the wall seconds per run."""
    import time

    import onnxruntime as ort

    from onnx_meralign import session_options

    options = session_options("all", 2, False)
    options.enable_profiling, options.profile_file_prefix = True, prefix
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {
        "input_values": (0.1 * np.random.default_rng(0).standard_normal((1, SAMPLES))).astype(np.float32),
        "attention_mask": np.ones((1, SAMPLES), np.int64),
    }
    session.run(None, feed)  # warm-up (profiled too: the first run is dropped below by counting)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    wall = (time.perf_counter() - start) / runs
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1e6 / (runs + 1)
    return dict(by_op.most_common()), wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "meralign_space_path")
    args = parser.parse_args(argv)
    folder = prepare_folder(args.work_dir)
    rate = matmul_gflops(2, repeats=3)
    seconds, wall = profile(folder / "onnx" / "audio_model.onnx", args.runs, str(args.work_dir / "ortprofile"))
    total = sum(seconds.values())
    result = {
        "environment": environment(),
        "matmul_gflops": round(rate, 1),
        "wall_seconds_per_10s_segment": round(wall, 3),
        "seconds_by_op": {op: round(s, 4) for op, s in seconds.items()},
        "share_by_op": {op: round(s / total, 3) for op, s in seconds.items()},
    }
    print(f"matmul rate {rate:.0f} GFLOP/s; {wall:.3f} s per 10 s segment")
    for op, s in list(seconds.items())[:10]:
        print(f"  {op:<28} {s:.3f} s  {s / total:.1%}")
    write_result("onnx_profile", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
