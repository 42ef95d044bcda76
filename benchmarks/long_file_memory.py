"""Part 2: peak memory while classifying one long file (each case in its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import (
    LABELS,
    SAMPLING_RATE_IN,
    build_clap,
    build_ours,
    current_rss_mb,
    environment,
    load_average,
    peak_rss_mb,
    synthetic_clip,
    timed,
)


def write_long_wav(path: Path, minutes: float, sampling_rate: int = SAMPLING_RATE_IN) -> None:
    """A WAV of `minutes` of synthetic music, written in 30 s chunks (never all in memory)."""
    import soundfile as sf

    chunk = synthetic_clip(30.0, sampling_rate, seed=3)
    total = int(round(minutes * 60 * sampling_rate))
    with sf.SoundFile(str(path), "w", samplerate=sampling_rate, channels=1, subtype="PCM_16") as f:
        written, k = 0, 0
        while written < total:
            part = chunk[: total - written] * (0.6 + 0.3 * ((k * 7) % 5) / 4)
            f.write(part)
            written += len(part)
            k += 1


def bench_memory(args) -> dict:
    load_before = load_average()
    # at least 8 segments per file, so every duration runs full pipeline batches (batch_size 8): shorter files
    # run smaller batches and need less memory, which would pass for growth with duration
    minutes = [10.0, 30.0, 60.0] if args.full else [1.5, 3.0]
    cases = []
    with tempfile.TemporaryDirectory(prefix="meralign-bench-") as tmp:
        for m in minutes:
            wav = Path(tmp) / f"long-{m:g}min.wav"
            write_long_wav(wav, m)
            for system in ("meralign_fp32", "clap"):
                cases.append(run_memory_child(system, wav, m, args.threads))
            if m == minutes[0]:  # what the sliced conv front end (and int8) buy, at one duration
                cases.append(run_memory_child("meralign_fp32_front_end_whole_batch", wav, m, args.threads))
                if args.full:
                    cases.append(run_memory_child("meralign_int8", wav, m, args.threads))
            if args.full and m in (minutes[0], minutes[-1]):
                # glibc's adaptive mmap threshold lets freed activation buffers fragment the heap, so the peak
                # creeps up over a long run; with a fixed threshold large buffers go back to the system
                cases.append(
                    run_memory_child(
                        "meralign_fp32", wav, m, args.threads, env={"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
                    )
                )
            wav.unlink()
    ours = [c for c in cases if c["system"] == "meralign_fp32" and "env" not in c]
    slope = np.polyfit([c["minutes"] for c in ours], [c["peak_rss_mb"] for c in ours], 1)[0] if len(ours) > 1 else None
    return {
        "cases": cases,
        "meralign_fp32_peak_rss_slope_mb_per_minute": None if slope is None else round(float(slope), 2),
        "goal_under_2500_mb": all(c["peak_rss_mb"] < 2500 for c in ours),
        "minutes": minutes,
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "environment": environment(),
        "method": "each case in its own process: peak RSS = the process's VmHWM (/proc/self/status) at exit; "
        "'baseline' = RSS after building the model, before reading audio. 48 kHz mono PCM_16 WAV; "
        "ours streams the path, CLAP gets the whole file as a float32 array (its pipeline needs "
        "ffmpeg for paths) and analyses 10 s of it",
    }


def run_memory_child(system: str, wav: Path, minutes: float, threads: int, env: dict | None = None) -> dict:
    spec = json.dumps({"system": system, "wav": str(wav), "minutes": minutes, "threads": threads})
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-child", spec],
        capture_output=True,
        text=True,
        timeout=4 * 3600,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory case {system} ({minutes} min) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if env:
        result["env"] = env
    print(
        f"  memory {system:38s} {minutes:5g} min: peak {result['peak_rss_mb']:.0f} MB "
        f"(baseline {result['baseline_rss_mb']:.0f} MB), {result['seconds']:.1f} s{' ' + str(env) if env else ''}"
    )
    return result


def memory_child(spec: dict) -> None:
    torch.set_num_threads(spec["threads"])
    system, wav = spec["system"], spec["wav"]
    if system == "clap":
        import soundfile as sf

        pipe = build_clap()
        baseline = current_rss_mb()
        seconds, _ = timed(lambda: pipe(sf.read(wav, dtype="float32")[0], candidate_labels=LABELS))
        segments = 1
    else:
        pipe = build_ours(quantize=system == "meralign_int8")
        if system.endswith("front_end_whole_batch"):
            pipe.model.audio_front_end_batch = 10**6  # the stock behaviour: the whole batch at once
        baseline = current_rss_mb()
        seconds, out = timed(lambda: pipe(wav, candidate_labels=LABELS, return_segments=True))
        segments = len(out["segments"])
    print(
        json.dumps(
            {
                "system": system,
                "minutes": spec["minutes"],
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "baseline_rss_mb": round(baseline, 1),
                "seconds": round(seconds, 2),
                "segments": segments,
            }
        )
    )
