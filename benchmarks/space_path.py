"""The Space's path end to end, each backend against CLAP in the same run, and the audio-embedding cache.

    python benchmarks/space_path.py               # ~15 min on 2 cores the first time (export), then ~8 min
    python benchmarks/space_path.py --repeats 1

A MERT-95M-shaped model (random weights: MERT's cannot be downloaded here; time depends on the architecture,
not the weights) is saved and exported with its ONNX files once into `--work-dir`, then loaded the way the
Space loads it, `pipeline("zero-shot-music-emotion", model=folder, trust_remote_code=True, backend=B)`, for
each backend. Interleaved with transformers' CLAP pipeline, 2 threads, fastest of `--repeats`:

- a 3-minute song, first call (the audio tower runs): seconds, seconds per analysed audio-second, the ratio
  to CLAP per analysed audio-second (CLAP looks at one 10 s window of any clip), and the FLOP efficiency of
  the whole call: the tower's arithmetic over the call's time, against a 2048 x 2048 torch.mm measured just
  before it;
- a 30 s clip, then the same clip with new labels: the audio-embedding cache's speed-up.

Writes benchmarks/results/space_path.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from common import (  # noqa: E402
    CLAP_ANALYSED_SECONDS,
    LABELS,
    SAMPLING_RATE_IN,
    TOWER_GFLOP_PER_10S,
    build_clap,
    environment,
    matmul_gflops,
    quiet_warnings,
    synthetic_clip,
    timed_seconds,
    write_result,
)

from onnx_meralign import BACKENDS as ONNX_BACKENDS  # noqa: E402

BACKENDS = ("torch", "onnx", "onnx-quantized", "onnx-int8")
CALIBRATION = [["joyful"], ["sad"], ["angry"], ["calm"], ["tender"], ["tense"], ["solemn"], ["powerful"]]
SONG_SECONDS = 180.0
CLIP_SECONDS = 30.0
NEW_LABELS = ["cheerful", "gloomy", "gentle", "furious", "relaxed", "anxious", "serious", "mighty", "hazy", "wistful"]


def prepare_folder(work: Path) -> Path:
    """The model folder with onnx/, exported once (delete `work` after changing the model or the exporter)."""
    folder = work / "model"
    if (folder / "onnx" / "meralign_onnx.json").is_file():
        return folder
    from meralign.data.synthetic.render import render_clip
    from meralign.onnx_export import export_onnx
    from meralign.publish.folder import save_model_folder
    from meralign.testing import build_mert_95m_model

    with quiet_warnings():
        model = build_mert_95m_model(seed=0)
        save_model_folder(model, folder)
        # the static int8 model calibrates on synthetic music of other seeds than the exporter's accuracy check
        rate = model.config.sampling_rate
        calibration = [
            render_clip(e, seed=300 + i, seconds=10.0, sampling_rate=rate) for i, e in enumerate(CALIBRATION)
        ]
        export_onnx(model, folder, quantized=True, calibration_audio=calibration)
    return folder


def load_pipelines(folder: Path) -> dict:
    from transformers import pipeline

    files = json.loads((folder / "onnx" / "meralign_onnx.json").read_text(encoding="utf-8"))["files"]["audio"]
    pipes = {}
    with quiet_warnings():
        for backend in BACKENDS:
            if ONNX_BACKENDS[backend] in (None, *files):  # torch, or a file the accuracy bar kept
                pipes[backend] = pipeline(
                    "zero-shot-music-emotion", model=str(folder), trust_remote_code=True, backend=backend
                )
    return pipes


def _forget_audio(pipe) -> None:
    """Empty the audio-embedding cache, so the next call runs the tower (a first call)."""
    size = pipe.audio_cache_size
    pipe.audio_cache_size = 0
    pipe.audio_cache_size = size


def _call(pipe, audio, labels):
    return pipe({"array": audio, "sampling_rate": SAMPLING_RATE_IN}, candidate_labels=labels)


def measure(pipes: dict, clap, repeats: int) -> dict:
    song = synthetic_clip(SONG_SECONDS, SAMPLING_RATE_IN)
    clip = synthetic_clip(CLIP_SECONDS, SAMPLING_RATE_IN, seed=8)
    for pipe in pipes.values():  # warm-up: sessions, kernels, the label cache of LABELS
        _call(pipe, clip, LABELS)
    clap(clip, candidate_labels=LABELS)
    runs = {name: {"song": [], "rate": [], "first": [], "repeat": []} for name in ("clap", *pipes)}
    for _ in range(repeats):
        for _ in range(3):  # CLAP's calls are short: several keep one load spike from deciding its best
            runs["clap"]["rate"].append(matmul_gflops(2, repeats=3))
            runs["clap"]["song"].append(timed_seconds(lambda: clap(song, candidate_labels=LABELS)))
        for name, pipe in pipes.items():
            _forget_audio(pipe)
            runs[name]["rate"].append(matmul_gflops(2, repeats=3))
            runs[name]["song"].append(timed_seconds(lambda: _call(pipe, song, LABELS)))
            _forget_audio(pipe)
            runs[name]["first"].append(timed_seconds(lambda: _call(pipe, clip, LABELS)))
            runs[name]["repeat"].append(timed_seconds(lambda: _call(pipe, clip, NEW_LABELS)))
            pipe._label_cache.clear()  # NEW_LABELS stay new in the next repeat
    return summarise(runs, len(song) / SAMPLING_RATE_IN)


def summarise(runs: dict, song_seconds: float) -> dict:
    clap_per_second = min(runs["clap"]["song"]) / CLAP_ANALYSED_SECONDS
    out = {"clap": {"song_s": round(min(runs["clap"]["song"]), 3), "per_analysed_second_s": clap_per_second}}
    gflop = TOWER_GFLOP_PER_10S * song_seconds / 10.0
    for name, r in runs.items():
        if name == "clap":
            continue
        best = min(range(len(r["song"])), key=r["song"].__getitem__)
        per_second = r["song"][best] / song_seconds
        out[name] = {
            "song_s": round(r["song"][best], 3),
            "per_analysed_second_s": round(per_second, 4),
            "vs_clap_per_analysed_second": round(per_second / clap_per_second, 2),
            "flop_efficiency": round(gflop / r["song"][best] / r["rate"][best], 3),
            # float32 at the matmul rate measured just before: what no float32 path can beat
            "float32_floor_vs_clap": round(gflop / r["rate"][best] / song_seconds / clap_per_second, 2),
            "matmul_gflops": round(r["rate"][best], 1),
            "clip_first_s": round(min(r["first"]), 3),
            "clip_repeat_new_labels_s": round(min(r["repeat"]), 4),
            "cache_speedup": round(min(r["first"]) / min(r["repeat"]), 1),
        }
    return out


def print_table(result: dict) -> None:
    clap = result["paths"]["clap"]
    print(
        f"\nCLAP: {clap['song_s']:.2f} s for the 3-minute song, {clap['per_analysed_second_s']:.4f} s per analysed s"
    )
    print(
        "\n| backend | 3-min song | per analysed audio-second | vs CLAP | FLOP efficiency (matmul rate) | "
        "float32 floor vs CLAP | 30 s clip: first / new labels | cache speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in BACKENDS:
        if name not in result["paths"]:
            continue
        r = result["paths"][name]
        print(
            f"| {name} | {r['song_s']:.1f} s | {r['per_analysed_second_s']:.3f} s | "
            f"{r['vs_clap_per_analysed_second']:.2f}x | "
            f"{r['flop_efficiency']:.0%} ({r['matmul_gflops']:.0f} GFLOP/s) | {r['float32_floor_vs_clap']:.2f}x | "
            f"{r['clip_first_s']:.2f} s / {r['clip_repeat_new_labels_s']:.3f} s | {r['cache_speedup']:.0f}x |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "meralign_space_path")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    folder = prepare_folder(args.work_dir)
    pipes = load_pipelines(folder)
    with quiet_warnings():
        clap = build_clap()
    result = {"environment": environment(), "song_seconds": SONG_SECONDS, "clip_seconds": CLIP_SECONDS}
    result["paths"] = measure(pipes, clap, args.repeats)
    # the exporter's accuracy check of the int8 audio model (worst cosine to float32 over synthetic clips)
    info = json.loads((folder / "onnx" / "meralign_onnx.json").read_text(encoding="utf-8"))
    result["cosine_to_fp32"] = info.get("cosine_to_fp32", {})
    result["rejected"] = info.get("rejected", {})
    print_table(result)
    write_result("space_path", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
