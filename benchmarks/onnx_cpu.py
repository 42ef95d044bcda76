"""ONNX on CPU: the MERT-95M-shaped audio tower through ONNX Runtime and OpenVINO, float32 and int8.

    python benchmarks/onnx_cpu.py                      # ~15 min on 2 cores the first time (exports, quantises)
    python benchmarks/onnx_cpu.py --repeats 5 --no-clap

Prints a table and writes benchmarks/results/onnx_cpu.json. Every path embeds the same 3 x 10 s segments of
synthetic music; the time is the fastest of `--repeats` interleaved runs (on a shared machine other work only
ever adds time). Live sessions hold ~1 GB each, so paths run in groups, each with the reference path
(ORT float32, level all) interleaved. Before every timed run a 2048 x 2048 torch.mm measures the matmul rate
the machine gives at that moment: efficiency is (GFLOP per 10 s x 3) / time / that rate, best run (and, more
conservatively, best time against the group's best rate). Accuracy: the cosine of each path's embeddings to
PyTorch float32 on `--clips` other 10 s clips. Weights are random (MERT's cannot be downloaded here): real
weights have activation outliers that usually cost int8 more accuracy, so re-check it on a trained model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent  # not resolve(): a symlinked copy uses its own tree
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import LABELS, SAMPLING_RATE_IN, TOWER_GFLOP_PER_10S, build_clap, matmul_gflops, synthetic_clip  # noqa: E402
from common import timed_seconds as _timed  # noqa: E402

from meralign.data.synthetic.render import render_clip  # noqa: E402
from meralign.testing import build_mert_95m_model  # noqa: E402

GFLOP_PER_10S = TOWER_GFLOP_PER_10S
SAMPLING_RATE = 24_000
SEGMENT = 10 * SAMPLING_RATE
CLIP_EMOTIONS = [["joyful"], ["sad"], ["angry", "tense"], ["calm"], ["tender", "sad"], ["powerful"], ["solemn"]]
REFERENCE = "ort_fp32_all"


# --------------------------------------------------------------------------------------------- the files
def prepare_files(work: Path, model, early_model, calibration: list[dict]) -> dict:
    """Export and quantise once into `work` (reused when present: delete the folder after changing the model)."""
    from meralign.onnx_export import export_onnx
    from meralign.onnx_quantize import FIRST_CONV, nodes_reading, quantize_dynamic_int8, quantize_static_int8

    files = {}
    for name, source, kwargs in (
        ("fp32", model, {}),
        ("fp32_opset18", model, {"opset": 18}),
        ("fp32_early_exit", early_model, {}),
    ):
        folder = work / name
        if not (folder / "onnx" / "audio_model.onnx").is_file():
            print(f"  exporting {name}", flush=True)
            export_onnx(source, folder, text=name == "fp32", **kwargs)
        files[name] = folder / "onnx" / "audio_model.onnx"
    fp32 = files["fp32"]
    first_conv = nodes_reading(fp32, [FIRST_CONV])
    recipes = {  # name: (quantiser, its options); the first conv (1 input channel, raw waveform) stays float
        "dynamic_int8": (quantize_dynamic_int8, {}),
        "dynamic_int8_per_channel": (quantize_dynamic_int8, {"per_channel": True}),
        "dynamic_int8_matmul_conv": (quantize_dynamic_int8, {"per_channel": True, "op_types": ("MatMul", "Conv")}),
        "static_qdq_matmul": (quantize_static_int8, {"op_types": ("MatMul",)}),
        "static_qdq_matmul_conv": (quantize_static_int8, {"exclude": first_conv}),
        "static_qoperator_matmul_conv": (quantize_static_int8, {"exclude": first_conv, "quant_format": "QOperator"}),
    }
    for name, (quantise, options) in recipes.items():
        target = work / f"audio_model_{name}.onnx"
        if not target.is_file():
            print(f"  quantising {name}", flush=True)
            extra = (calibration,) if quantise is quantize_static_int8 else ()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantise(fp32, target, *extra, **options)
        files[name] = target
    files["text"] = work / "fp32" / "onnx" / "text_model.onnx"
    return files


# --------------------------------------------------------------------------------------------- the paths
def ort_path(path, level: str = "all", threads: int = 2, memory_pattern: bool = False):
    import onnxruntime as ort

    from onnx_meralign import session_options

    session = ort.InferenceSession(
        str(path), sess_options=session_options(level, threads, memory_pattern), providers=["CPUExecutionProvider"]
    )
    return lambda values, mask: session.run(None, {"input_values": values, "attention_mask": mask})[0]


def openvino_path(path, precision: str, threads: int = 2):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return lambda values, mask: request.infer({"input_values": values, "attention_mask": mask})[output].copy()


def torch_path(model, threads: int = 2):
    def embed(values, mask):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return model.get_audio_features(torch.from_numpy(values), torch.from_numpy(mask)).numpy()

    return embed


REFERENCE_SPEC = ("ref", REFERENCE, "ort", "fp32", {}, "ORT float32, level all")
E2E_PATHS = (
    REFERENCE,
    "ort_dynamic_int8_per_channel",
    "ort_static_qoperator_matmul_conv",
    "openvino_bf16",
    "openvino_static_qdq",
)
EARLY_EXIT = "head on layers 3, 6, 9: the tower stops at 9 (cosine to its own PyTorch model)"
# (group, name, runtime, file, options, what): a group's paths run interleaved with the reference (ORT fp32, all)
PATHS = [
    ("levels", "torch_fp32", "torch", None, {}, "PyTorch eager, model.get_audio_features"),
    ("levels", "ort_fp32_disable", "ort", "fp32", {"level": "disable"}, "no graph optimisation"),
    ("levels", "ort_fp32_basic", "ort", "fp32", {"level": "basic"}, "constant folding, redundant nodes"),
    ("levels", "ort_fp32_extended", "ort", "fp32", {"level": "extended"}, "+ fusions (contrib ops)"),
    ("options", "ort_fp32_memory_pattern_on", "ort", "fp32", {"memory_pattern": True}, "ORT's default mem pattern"),
    ("options", "ort_fp32_opset18", "ort", "fp32_opset18", {}, "opset 18 export"),
    ("options", "ort_fp32_1_thread", "ort", "fp32", {"threads": 1}, "intra_op_num_threads=1"),
    ("options", "ort_fp32_early_exit_depth_9", "ort", "fp32_early_exit", {"reference": "early_exit"}, EARLY_EXIT),
    ("int8", "ort_dynamic_int8", "ort", "dynamic_int8", {}, "quantize_dynamic MatMul, per-tensor"),
    ("int8", "ort_dynamic_int8_per_channel", "ort", "dynamic_int8_per_channel", {}, "MatMul, per-channel"),
    ("int8", "ort_dynamic_int8_matmul_conv", "ort", "dynamic_int8_matmul_conv", {}, "+ Conv (ConvInteger)"),
    ("int8", "ort_static_qdq_matmul", "ort", "static_qdq_matmul", {}, "quantize_static QDQ, MatMul, MinMax"),
    ("int8b", "ort_static_qdq_matmul_conv", "ort", "static_qdq_matmul_conv", {}, "QDQ, MatMul + conv 1-6, pos"),
    ("int8b", "ort_static_qoperator_matmul_conv", "ort", "static_qoperator_matmul_conv", {}, "as above, QOperator"),
    ("int8b", "openvino_static_qdq", "openvino", "static_qdq_matmul_conv", {}, "OpenVINO on the static QDQ file"),
    ("openvino", "openvino_fp32", "openvino", "fp32_opset18", {}, "OpenVINO CPU, opset-18 file, f32 precision hint"),
    ("openvino", "openvino_bf16", "openvino", "fp32_opset18", {"precision": "bf16"}, "bf16 (default on AVX512_BF16)"),
    ("openvino", "openvino_fp32_opset23", "openvino", "fp32", {}, "OpenVINO, opset-23 file, f32"),
]


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def make_path(spec, files: dict, model, threads: int):
    """The embedding function of one PATHS entry (its session is built here)."""
    _, _, runtime, file, options, _ = spec
    threads = options.get("threads", threads)
    if runtime == "torch":
        return torch_path(model, threads)
    if runtime == "openvino":
        return openvino_path(files[file], options.get("precision", "f32"), threads)
    return ort_path(files[file], options.get("level", "all"), threads, options.get("memory_pattern", False))


# ---------------------------------------------------------------------------------------------- measuring
def run_group(specs, files, model, batch, clips, references, args) -> dict:
    """Build the group's paths plus the reference, time them interleaved, then their accuracy.

    Each timed run follows a matmul-rate measurement, so a run's efficiency is paired with what the (shared)
    machine gave just before it; `vs_reference` is the median over rounds of the path's time over the
    reference's time in the same round."""
    group = [REFERENCE_SPEC, *specs]
    embed = {}
    for spec in group:
        embed[name := spec[1]] = make_path(spec, files, model, args.threads)
        embed[name](*batch)  # warm-up: the first run plans memory and packs weights
    times, rates = {name: [] for name in embed}, {name: [] for name in embed}
    cpu_times = {name: [] for name in embed}
    for _ in range(args.repeats):
        for name, fn in embed.items():
            rates[name].append(matmul_gflops(args.threads, repeats=3))
            start_cpu = time.process_time()
            times[name].append(_timed(lambda: fn(*batch)))
            cpu_times[name].append(time.process_time() - start_cpu)
    peak = max(max(r) for r in rates.values())
    cpu_rate = matmul_gflops(args.threads, cpu=True)  # what a CPU-second of matmul does, busy or not
    out = {}
    for _, name, _, _, options, what in group:
        best = min(times[name])
        paired = max(3 * args.gflop / t / r for t, r in zip(times[name], rates[name]))
        ratios = [t / ref for t, ref in zip(times[name], times[REFERENCE])]
        reference = references[options.get("reference", "full")]
        cosines = [float(np.dot(embed[name](v, m)[0], ref)) for (v, m), ref in zip(clips, reference)]
        out[name] = {
            "what": what,
            "min_s": round(best, 3),
            "runs_s": [round(t, 3) for t in times[name]],
            "matmul_gflops_before_runs": [round(r, 1) for r in rates[name]],
            "per_audio_second_s": round(best / 30.0, 4),
            "matmul_gflops_peak": round(peak, 1),
            "efficiency": round(paired, 3),
            "efficiency_vs_peak": round(3 * args.gflop / best / peak, 3),
            "cpu_s": round(min(cpu_times[name]), 3),
            "efficiency_cpu_time": round(3 * args.gflop * args.threads / min(cpu_times[name]) / cpu_rate, 3),
            "vs_reference": round(float(np.median(ratios)), 3),
            "cosine_min": round(min(cosines), 6),
            "cosine_mean": round(float(np.mean(cosines)), 6),
        }
        print(
            f"  {name:34s} {best / 30:.4f} s/audio-s  eff {paired:.2f} (vs peak {peak:.0f}: "
            f"{out[name]['efficiency_vs_peak']:.2f}, cpu-time {out[name]['efficiency_cpu_time']:.2f})  "
            f"x{out[name]['vs_reference']:.2f} of ref  cos min {min(cosines):.5f}",
            flush=True,
        )
    embed.clear()
    gc.collect()
    return out


def _embed_all(model, clips) -> list[np.ndarray]:
    with torch.inference_mode():
        return [model.get_audio_features(torch.from_numpy(v), torch.from_numpy(m))[0].numpy() for v, m in clips]


def synthetic_batch(seconds: float = 30.0, seed: int = 7):
    audio = render_clip(["joyful", "tense"], seed=seed, seconds=seconds, sampling_rate=SAMPLING_RATE)
    values = np.ascontiguousarray(audio[: 3 * SEGMENT].reshape(3, SEGMENT), dtype=np.float32)
    return values, np.ones(values.shape, np.int64)


def accuracy_clips(n: int, first_seed: int = 100):
    clips = []
    for i in range(n):
        audio = render_clip(
            CLIP_EMOTIONS[(i + first_seed) % len(CLIP_EMOTIONS)],
            seed=first_seed + i,
            seconds=10.0,
            sampling_rate=SAMPLING_RATE,
        )
        clips.append((audio[None].astype(np.float32), np.ones((1, SEGMENT), np.int64)))
    return clips


def count_gflop(model) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    segment = torch.from_numpy(synthetic_batch()[0][:1])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.get_audio_features(segment)
    return counter.get_total_flops() / 1e9


# -------------------------------------------------------------------------------------- end to end vs CLAP
def _onnx_pipeline(embed, text_session, tokenizer, logit_scale: float):
    """What the pipeline's backend="onnx" does per call: segment + resample, embed, score (softmax, mean)."""
    from audio_meralign import iter_segments

    def call(audio, sampling_rate, labels, cached=None):
        segments = list(iter_segments({"array": audio, "sampling_rate": sampling_rate}, SAMPLING_RATE, 10.0))
        values = np.stack([s.samples for s in segments])
        valid = np.array([[max(s.valid, 400)] for s in segments])
        audio_embeds = embed(values, (np.arange(values.shape[1]) < valid).astype(np.int64))
        if cached is None:
            tokens = tokenizer(labels, padding=True, truncation=True, max_length=256, return_tensors="np")
            cached = text_session.run(None, {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask")})[
                0
            ]
        logits = np.exp(logit_scale) * audio_embeds @ cached.T
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (weights / weights.sum(axis=1, keepdims=True)).mean(axis=0), cached

    return call


def end_to_end(files, model, args) -> dict:
    """Per analysed audio-second against transformers' CLAP pipeline, built the way the CPU benchmark builds it."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    clap = build_clap()
    audio = synthetic_clip(30.0, SAMPLING_RATE_IN)
    tokenizer = AutoTokenizer.from_pretrained(model.config.text_name_or_path)
    text = ort.InferenceSession(str(files["text"]), providers=["CPUExecutionProvider"])
    scale = float(model.logit_scale.detach())
    specs = {spec[1]: spec for spec in [REFERENCE_SPEC, *PATHS] if spec[2] != "openvino" or has_openvino()}
    pipes = {
        name: _onnx_pipeline(make_path(specs[name], files, model, args.threads), text, tokenizer, scale)
        for name in E2E_PATHS
        if name in specs
    }
    cached = {name: pipe(audio, SAMPLING_RATE_IN, LABELS)[1] for name, pipe in pipes.items()}  # warm-up
    clap(audio, candidate_labels=LABELS, hypothesis_template="{}.")
    times = {"clap": [], **{f"{n}/{case}": [] for n in pipes for case in ("new_labels", "cached_labels")}}
    for _ in range(args.repeats):
        for _ in range(3):  # CLAP's calls are short: more of them keep one load spike from deciding its best
            times["clap"].append(_timed(lambda: clap(audio, candidate_labels=LABELS, hypothesis_template="{}.")))
        for name, pipe in pipes.items():
            times[f"{name}/new_labels"].append(_timed(lambda: pipe(audio, SAMPLING_RATE_IN, LABELS)))
            times[f"{name}/cached_labels"].append(_timed(lambda: pipe(audio, SAMPLING_RATE_IN, LABELS, cached[name])))
    clap_per_second = min(times["clap"]) / 10.0  # CLAP analyses one 10 s window of any clip
    out = {"clap": {"min_s": round(min(times["clap"]), 3), "per_analysed_audio_second_s": round(clap_per_second, 4)}}
    for key, runs in times.items():
        if key != "clap":
            per_second = min(runs) / 30.0
            out[key] = {
                "min_s": round(min(runs), 3),
                "per_analysed_audio_second_s": round(per_second, 4),
                "vs_clap_per_audio_second": round(per_second / clap_per_second, 2),
            }
        print(
            f"  {key:40s} {out[key]['per_analysed_audio_second_s']:.4f} s per analysed audio-second "
            f"{out[key].get('vs_clap_per_audio_second', 1.0):.2f}x CLAP",
            flush=True,
        )
    return out


def print_table(result: dict) -> None:
    print("\n| path | s per audio-second | FLOP efficiency (paired / vs peak) | vs ORT fp32 | cosine to fp32 (min) |")
    print("| --- | --- | --- | --- | --- |")
    for group, paths in result["paths"].items():
        for name, row in paths.items():
            if name == REFERENCE and group != next(iter(result["paths"])):
                continue  # the reference's own row once, from the first group
            print(
                f"| {name} ({group}) | {row['per_audio_second_s']:.4f} | {row['efficiency']:.0%} / "
                f"{row['efficiency_vs_peak']:.0%} of {row['matmul_gflops_peak']:.0f} GFLOP/s | "
                f"{row['vs_reference']:.2f} | {row['cosine_min']:.5f} |"
            )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=6, help="10 s clips for the accuracy check")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "meralign_onnx_bench")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_cpu.json")
    parser.add_argument("--groups", nargs="*", default=None, help="only these groups (levels options int8 ...)")
    parser.add_argument("--no-clap", action="store_true", help="skip the end-to-end comparison with CLAP")
    parser.add_argument("--gflop", type=float, default=GFLOP_PER_10S)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    load_before = [round(x, 2) for x in os.getloadavg()]
    model = build_mert_95m_model(seed=0)
    early = build_mert_95m_model(seed=0, feature_layers=[3, 6, 9])
    batch, clips = synthetic_batch(), accuracy_clips(args.clips)
    references = {"full": _embed_all(model, clips), "early_exit": _embed_all(early, clips)}
    calibration = [{"input_values": v, "attention_mask": m} for v, m in accuracy_clips(2, first_seed=200)]
    files = prepare_files(args.work_dir, model, early, calibration)  # calibrated on clips not used for accuracy
    del early
    result = {"gflop_per_10s_used": args.gflop, "gflop_per_10s_counted": round(count_gflop(model), 1), "paths": {}}
    specs = [spec for spec in PATHS if spec[2] != "openvino" or has_openvino()]
    groups = list(dict.fromkeys(g for g, *_ in specs))
    for group in args.groups or groups:
        print(f"== group {group} ==", flush=True)
        result["paths"][group] = run_group(
            [s for s in specs if s[0] == group], files, model, batch, clips, references, args
        )
        _write(args.results, result)  # a long run on a shared machine: keep what was measured so far
    if not args.no_clap:
        print("== end to end vs CLAP ==", flush=True)
        try:
            result["end_to_end"] = end_to_end(files, model, args)
        except Exception as err:  # the CLAP side is the other benchmark's code: report, keep the tower numbers
            result["end_to_end"] = {"failed": repr(err)}
            print(f"  end to end failed: {err!r}", flush=True)
    result.update(
        threads=args.threads,
        repeats=args.repeats,
        clips=args.clips,
        load_before=load_before,
        load_after=[round(x, 2) for x in os.getloadavg()],
        environment=_environment(),
    )
    _write(args.results, result)
    print_table(result)
    print(f"wrote {args.results}")
    return 0


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _environment() -> dict:
    import platform

    import onnxruntime

    versions = {"python": platform.python_version(), "torch": torch.__version__, "ort": onnxruntime.__version__}
    for name in ("onnx", "onnxscript", "openvino", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0].split()
    versions["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    versions["cpus"] = os.cpu_count()
    return versions


if __name__ == "__main__":
    sys.exit(main())
