"""meralign benchmarks: CPU against CLAP, long-file memory, GPU feature extraction, head training.

    python benchmarks/run.py --quick              # CPU parts in a few minutes; GPU part when CUDA is present
    python benchmarks/run.py --full               # 10 / 30 / 60-minute memory runs, more repeats (long)
    python benchmarks/run.py --quick --only cpu memory

Every part writes benchmarks/results/<part>.json (written atomically) with the machine, the thread
count and the load average before and after it ran: numbers from a busy machine are slower, and the
JSON says so. All models are built from configs with random weights (nothing is downloaded): speed
and memory depend on the architecture, not on the weights. See benchmarks/README.md for the method
and the latest table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PARTS = ("cpu", "memory", "gpu", "training")
LABELS = ["joyful", "sad", "tender", "angry", "calm", "tense", "solemn", "powerful", "dreamy", "nostalgic"]
WARMUP_LABELS = ["happy", "gloomy", "gentle", "furious", "relaxed", "anxious", "serious", "strong", "hazy", "wistful"]
# One template per repeat: the label cache is keyed by (template, label), so each repeat's first call
# embeds its labels afresh (the "new labels" case) and its second call finds them cached.
TEMPLATES = ["{}", "{} music", "music that sounds {}", "a {} song", "this song is {}", "{} mood", "a {} piece"]
CLAP_ANALYSED_SECONDS = 10.0  # ClapFeatureExtractor.max_length_s: CLAP keeps one 10 s window of any clip
SAMPLING_RATE_IN = 48_000  # the clip both peers get: CLAP's own rate; ours resamples to 24 kHz
GFLOP_PER_SEGMENT_ANCHOR = 229.0  # MERT-95M-shaped tower, one 10 s segment (reference anchor)


# ------------------------------------------------------------------------------------ bookkeeping
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import transformers

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return env


def write_result(name: str, payload: dict, results: Path = RESULTS) -> Path:
    from meralign.utils import atomic_write_json

    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    atomic_write_json(path, payload)
    print(f"wrote {path}")
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times]}


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size. Linux: VmHWM, the high-water mark of this program's own memory
    map. (getrusage's ru_maxrss would do elsewhere, but on Linux it keeps the parent's peak across fork+exec,
    so a child started by a big parent reports the parent's size.)"""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    current = _proc_status_mb("VmRSS")
    return current if current is not None else float("nan")


@contextmanager
def quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def wait_for_idle(seconds: float) -> float:
    """Wait (up to `seconds`) until the 1-minute load average is below half the cores; warn if it stays busy.
    Returns the seconds waited."""
    limit = (os.cpu_count() or 2) / 2
    start = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() < start + seconds:
        time.sleep(5)
    if os.getloadavg()[0] >= limit:
        print(f"  note: load average {load_average()} on {os.cpu_count()} cores (a part that just ran counts too): "
              "other work slows these numbers")
    return time.monotonic() - start


# --------------------------------------------------------------------------------------- the peers
def synthetic_clip(seconds: float, sampling_rate: int, seed: int = 7) -> np.ndarray:
    """Real-shaped music (melody, chords, percussion) from the synthetic corpus, float32 mono."""
    from meralign.data.synthetic import render_clip

    return render_clip(["joyful", "tense"], seed=seed, seconds=seconds, sampling_rate=sampling_rate)


def build_ours(quantize: bool = False, feature_layers=(3, 6, 9, 12)):
    """Our pipeline over a MERT-95M-shaped tower (random weights) and the packaged all-MiniLM-L6-v2."""
    from transformers import pipeline

    import pipeline_meralign
    from meralign.tiny import build_mert_95m_model
    from modeling_meralign import build_processors

    with quiet_warnings():
        model = build_mert_95m_model(seed=0, feature_layers=list(feature_layers))
    if quantize:
        model.quantize_for_cpu()
    feature_extractor, tokenizer = build_processors(model.config, model.config.text_name_or_path)
    return pipeline(pipeline_meralign.TASK, model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)


def clap_tokenizer():
    """CLAP's text tower is RoBERTa, whose tokenizer cannot be downloaded offline. This trains a byte-level
    BPE (RoBERTa's tokenizer family: <s>=0, <pad>=1, </s>=2, same post-processing) on the benchmark's
    words. Only token ids change, not the text model's size or the sequence lengths that matter here."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast

    words = LABELS + WARMUP_LABELS + [t.format("") for t in TEMPLATES] + ["This is a sound of"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(words, vocab_size=1000, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_input_names=["input_ids", "attention_mask"],
    )


def build_clap():
    """transformers' zero-shot-audio-classification pipeline over ClapModel(ClapConfig()) (random weights).

    ClapConfig() is the unfused HTSAT + RoBERTa architecture of laion/clap-htsat-unfused, whose feature
    extractor crops one random 10 s window ("rand_trunc"); the extractor's own default ("fusion") needs the
    fused model."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, pipeline

    with quiet_warnings():
        model = ClapModel(ClapConfig()).eval()
    feature_extractor = ClapFeatureExtractor(truncation="rand_trunc")
    return pipeline("zero-shot-audio-classification", model=model, feature_extractor=feature_extractor,
                    tokenizer=clap_tokenizer())


def call_peer(name: str, pipe, audio: np.ndarray, labels: list[str], template: str):
    if name == "clap":
        return pipe(audio, candidate_labels=labels, hypothesis_template=template + ".")
    return pipe({"array": audio, "sampling_rate": SAMPLING_RATE_IN}, candidate_labels=labels, hypothesis_template=template)


# ------------------------------------------------------------------------------ part 1: CPU vs CLAP
def bench_cpu(args) -> dict:
    torch.set_num_threads(args.threads)
    load_before = load_average()
    clip_seconds = 30.0
    audio = synthetic_clip(clip_seconds, SAMPLING_RATE_IN)
    print(f"cpu: building peers ({args.threads} threads)")
    peers = {"clap": build_clap(), "meralign_fp32": build_ours(), "meralign_int8": None}
    int8_model = copy.deepcopy(peers["meralign_fp32"].model).quantize_for_cpu()
    peers["meralign_int8"] = rebuild_pipeline(peers["meralign_fp32"], int8_model)
    analysed = {"clap": CLAP_ANALYSED_SECONDS, "meralign_fp32": clip_seconds, "meralign_int8": clip_seconds}

    for name, pipe in peers.items():  # kernels primed, the measured labels not yet embedded
        call_peer(name, pipe, audio, WARMUP_LABELS, "{}")
    times = {name: {"new_labels": [], "repeated": []} for name in peers}
    for r in range(args.repeats):
        template = TEMPLATES[1 + r % (len(TEMPLATES) - 1)]
        for name, pipe in peers.items():  # interleaved, so a load spike hits every peer alike
            # CLAP's calls are short: a few more of them keep one load spike from deciding its fastest run
            for _ in range(3 if name == "clap" else 1):
                times[name]["new_labels"].append(timed(lambda: call_peer(name, pipe, audio, LABELS, template))[0])
                times[name]["repeated"].append(timed(lambda: call_peer(name, pipe, audio, LABELS, template))[0])
            print(f"  {name:14s} repeat {r}: new labels {times[name]['new_labels'][-1]:.3f} s, "
                  f"repeated {times[name]['repeated'][-1]:.3f} s")
    result = {"peers": {}, "ratios": {}}
    for name in peers:
        entry = {"analysed_audio_seconds": analysed[name]}
        for case in ("new_labels", "repeated"):
            s = summary(times[name][case])
            entry[case] = {**s, "per_analysed_audio_second_s": round(s["min_s"] / analysed[name], 5)}
        result["peers"][name] = entry
    result["ratios"] = peer_ratios(result["peers"])
    result["levers"] = bench_levers(peers, int8_model, audio, args)
    result["audio_gflop"] = audio_gflop(peers, audio)
    result["int8_accuracy"] = int8_accuracy(peers["meralign_fp32"].model, int8_model, n_clips=8 if args.full else 3)
    result.update(
        clip_seconds=clip_seconds, n_labels=len(LABELS), threads=args.threads, repeats=args.repeats,
        load_average_before=load_before, load_average_after=load_average(), environment=environment(),
        setup={
            "clap": "ClapModel(ClapConfig()) random weights (HTSAT unfused + RoBERTa), ClapFeatureExtractor("
                    "truncation='rand_trunc'), offline byte-level BPE tokenizer; numpy input at 48 kHz",
            "meralign": "MERT-95M-shaped HubertModel (random weights), layers 3,6,9,12, MLP head 768, packaged "
                        "all-MiniLM-L6-v2; dict input at 48 kHz (resampled to 24 kHz), pipeline batch_size 8",
            "new_labels": "a call whose (template, labels) were never embedded by that pipeline",
            "repeated": "the same call again (ours: labels cached; CLAP re-embeds every call)",
            "statistic": "ratios and per-second figures use each peer's fastest run (min): on a shared machine "
                         "other work only ever adds time; medians are in the JSON too",
        },
    )
    return result


def rebuild_pipeline(pipe, model):
    from transformers import pipeline

    import pipeline_meralign

    return pipeline(pipeline_meralign.TASK, model=model, tokenizer=pipe.tokenizer, feature_extractor=pipe.feature_extractor)


def peer_ratios(peers: dict) -> dict:
    ratios = {}
    clap = peers["clap"]
    for name in ("meralign_fp32", "meralign_int8"):
        for case in ("new_labels", "repeated"):
            ours = peers[name][case]
            per_second = ours["per_analysed_audio_second_s"] / clap[case]["per_analysed_audio_second_s"]
            ratios[f"{name}/{case}"] = {
                "wall_time_ratio_vs_clap": round(ours["min_s"] / clap[case]["min_s"], 3),
                "per_analysed_audio_second_ratio_vs_clap": round(per_second, 3),
                "goal_within_2x_per_audio_second": bool(per_second <= 2.0),
            }
    return ratios


def segments_of(audio: np.ndarray, seconds: float = 10.0) -> torch.Tensor:
    from audio_meralign import iter_segments

    segs = iter_segments({"array": audio, "sampling_rate": SAMPLING_RATE_IN}, 24_000, seconds)
    return torch.from_numpy(np.stack([s.samples for s in segs]))


def bench_levers(peers: dict, int8_model, audio: np.ndarray, args) -> dict:
    """What each lever buys, on the audio tower alone: the 30 s clip as 3 x 10 s segments."""
    model = peers["meralign_fp32"].model
    batch = segments_of(audio)
    with quiet_warnings():
        linears_only = copy.deepcopy(model).quantize_for_cpu(front_end_layers=0)
    with torch.inference_mode():
        linears_only.pooled_audio_layers(batch[:1])  # warm-up: the other models ran in the peer comparison
    layers = list(model.config.feature_layers)

    def stock():  # transformers' HubertModel as the reference code ran it: every layer, every hidden state
        states = model.audio_model(batch, output_hidden_states=True).hidden_states
        return torch.stack([states[i].mean(1) for i in layers], 1)

    def one_thread_int8():
        torch.set_num_threads(1)
        try:
            return int8_model.pooled_audio_layers(batch)
        finally:
            torch.set_num_threads(args.threads)

    variants = {
        "stock_hubert_fp32_all_layers": stock,
        "ours_fp32": lambda: model.pooled_audio_layers(batch),
        "ours_fp32_unbatched_segments": lambda: [model.pooled_audio_layers(batch[i : i + 1]) for i in range(len(batch))],
        "ours_fp32_early_exit_depth_9": lambda: model.audio_hidden_states(batch, depth=9),
        "ours_int8_linears": lambda: linears_only.pooled_audio_layers(batch),
        "ours_int8_linears_and_front_end": lambda: int8_model.pooled_audio_layers(batch),
        "ours_int8_1_thread": one_thread_int8,
    }
    compile_seconds = {}
    if args.compile:  # optional: inductor's first call compiles (tens of seconds on 2 cores)
        for name, source in (("ours_fp32_torch_compile", model), ("ours_int8_torch_compile", int8_model)):
            compiled = copy.deepcopy(source)
            compiled.audio_hidden_states = torch.compile(compiled.audio_hidden_states, dynamic=False)
            with torch.inference_mode(), quiet_warnings():
                compile_seconds[name] = round(timed(lambda: compiled.pooled_audio_layers(batch))[0], 1)
            variants[name] = lambda compiled=compiled: compiled.pooled_audio_layers(batch)
    times = {name: [] for name in variants}
    with torch.inference_mode():
        for _ in range(args.lever_repeats):
            for name, fn in variants.items():
                times[name].append(timed(fn)[0])
    reference = min(times["stock_hubert_fp32_all_layers"])
    out = {}
    for name, runs in times.items():
        s = summary(runs)
        out[name] = {**s, "per_audio_second_s": round(s["min_s"] / 30.0, 5),
                     "speedup_vs_stock": round(reference / s["min_s"], 3)}
        print(f"  lever {name:34s} {s['min_s']:.3f} s  x{out[name]['speedup_vs_stock']:.2f}")
    if compile_seconds:
        out["_compile_first_call_seconds"] = compile_seconds
    out["_note"] = ("3 x 10 s segments in one batch (except 'unbatched'); 'early_exit_depth_9' is what a head using "
                    "layers up to 9 runs (the default head uses layer 12, so early exit saves nothing there)")
    return out


def audio_gflop(peers: dict, audio: np.ndarray) -> dict:
    """Audio-side FLOPs of one analysed 10 s window per peer (float32 models): why the per-second gap exists."""
    from torch.utils.flop_counter import FlopCounterMode

    clap = peers["clap"]
    features = clap.feature_extractor(audio, sampling_rate=SAMPLING_RATE_IN, return_tensors="pt")
    ours = peers["meralign_fp32"].model
    segment = segments_of(audio)[:1]
    counts = {}
    for name, fn in (("clap", lambda: clap.model.get_audio_features(**features)),
                     ("meralign", lambda: ours.get_audio_features(segment))):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:  # weight-norm convs fail under inference_mode
            fn()
        counts[name] = round(counter.get_total_flops() / 1e9, 1)
    return {"clap_gflop_per_10s": counts["clap"], "meralign_gflop_per_10s": counts["meralign"],
            "meralign_over_clap": round(counts["meralign"] / counts["clap"], 2)}


def int8_accuracy(model, int8_model, n_clips: int) -> dict:
    """Embedding cosine, int8 vs float32, on real-shaped 10 s clips of the first `n_clips` synthetic emotions."""
    from meralign.data.synthetic import EMOTIONS, render_clip

    clips = torch.stack([torch.from_numpy(render_clip([e], seed=i, seconds=10.0, sampling_rate=24_000))
                         for i, e in enumerate(EMOTIONS[:n_clips])])
    with torch.inference_mode():
        ref, quant = model.get_audio_features(clips), int8_model.get_audio_features(clips)
        pooled_ref, pooled_q = model.pooled_audio_layers(clips), int8_model.pooled_audio_layers(clips)
    cos = torch.nn.functional.cosine_similarity(ref, quant, dim=-1)
    pooled_cos = torch.nn.functional.cosine_similarity(pooled_ref, pooled_q, dim=-1)
    return {"clips": n_clips, "embedding_cosine_min": round(cos.min().item(), 5),
            "embedding_cosine_mean": round(cos.mean().item(), 5), "pooled_layer_cosine_min": round(pooled_cos.min().item(), 5)}


# --------------------------------------------------------------------------- part 2: long-file memory
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
                cases.append(run_memory_child("meralign_fp32", wav, m, args.threads,
                                              env={"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}))
            wav.unlink()
    ours = [c for c in cases if c["system"] == "meralign_fp32" and "env" not in c]
    slope = np.polyfit([c["minutes"] for c in ours], [c["peak_rss_mb"] for c in ours], 1)[0] if len(ours) > 1 else None
    return {
        "cases": cases, "meralign_fp32_peak_rss_slope_mb_per_minute": None if slope is None else round(float(slope), 2),
        "goal_under_2500_mb": all(c["peak_rss_mb"] < 2500 for c in ours), "minutes": minutes, "threads": args.threads,
        "load_average_before": load_before, "load_average_after": load_average(), "environment": environment(),
        "method": "each case in its own process: peak RSS = the process's VmHWM (/proc/self/status) at exit; "
                  "'baseline' = RSS after building the model, before reading audio. 48 kHz mono PCM_16 WAV; "
                  "ours streams the path, CLAP gets the whole file as a float32 array (its pipeline needs "
                  "ffmpeg for paths) and analyses 10 s of it",
    }


def run_memory_child(system: str, wav: Path, minutes: float, threads: int, env: dict | None = None) -> dict:
    spec = json.dumps({"system": system, "wav": str(wav), "minutes": minutes, "threads": threads})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", spec],
                          capture_output=True, text=True, timeout=4 * 3600, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"memory case {system} ({minutes} min) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if env:
        result["env"] = env
    print(f"  memory {system:38s} {minutes:5g} min: peak {result['peak_rss_mb']:.0f} MB "
          f"(baseline {result['baseline_rss_mb']:.0f} MB), {result['seconds']:.1f} s{' ' + str(env) if env else ''}")
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
    print(json.dumps({"system": system, "minutes": spec["minutes"], "peak_rss_mb": round(peak_rss_mb(), 1),
                      "baseline_rss_mb": round(baseline, 1), "seconds": round(seconds, 2), "segments": segments}))


# ----------------------------------------------------------------------- part 3: GPU feature extraction
class UtilisationSampler:
    """GPU busy percentage sampled every 0.1 s (NVML through torch.cuda.utilization), when available."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(int(torch.cuda.utilization()))
            except Exception:  # no NVML: utilisation is reported as unknown
                return
            self._stop.wait(0.1)

    def __enter__(self):
        if torch.cuda.is_available():
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(step: Callable[[], Any], batch_size: int, device: torch.device, warmup: int, iters: int) -> dict:
    """Segments per second of `step` (one batch, host-to-device copy and pooled result back included)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with UtilisationSampler() as sampler:
        start = time.perf_counter()
        for _ in range(iters):
            step()
        synchronize(device)
        seconds = time.perf_counter() - start
    out = {"batch_size": batch_size, "segments_per_s": round(batch_size * iters / seconds, 1), "seconds": round(seconds, 3),
           "gpu_busy_percent": sampler.mean()}
    if device.type == "cuda":
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def matmul_peak_tflops(device: torch.device) -> float | None:
    """Measured dense bf16 matmul throughput: the denominator of model FLOP utilisation."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    synchronize(device)
    start = time.perf_counter()
    for _ in range(20):
        a @ a
    synchronize(device)
    return round(20 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12, 1)


def tower_gflop_per_segment(tower, samples: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, samples, device=device, dtype=next(tower.parameters()).dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # weight-norm convs fail under inference_mode
        tower(x)
    return round(counter.get_total_flops() / 1e9, 1)


def gpu_variant(name: str, fn: Callable[[], dict]) -> dict:
    """Run one variant; an out-of-memory or compile failure is recorded, not fatal."""
    try:
        result = fn()
        print(f"  gpu {name:44s} {result.get('segments_per_s')} seg/s")
        return result
    except Exception as err:  # noqa: BLE001 - every failure of a variant is a result to report
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"  gpu {name:44s} failed: {type(err).__name__}: {str(err)[:200]}")
        return {"error": f"{type(err).__name__}: {str(err)[:500]}"}


def bench_gpu(args) -> dict:
    """Segments/s of 10 s clips through the MERT-95M-shaped tower: stock references and our extraction path."""
    on_cpu_check = args.gpu_on_cpu
    if not torch.cuda.is_available() and not on_cpu_check:
        message = ("no CUDA GPU on this machine: GPU feature extraction skipped "
                   "(on a GPU machine: python benchmarks/run.py --quick --only gpu)")
        print(message)
        return {"skipped": True, "reason": message, "environment": environment()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # the anchors saw no change; keep runs comparable
    load_before = load_average()
    from transformers import HubertModel

    from meralign.tiny import build_mert_95m_model, build_tiny_model

    with quiet_warnings():
        model = build_tiny_model(seed=0) if on_cpu_check else build_mert_95m_model(seed=0)
    model.eval().to(device)
    samples = int(model.config.segment_samples)
    layers = list(model.config.feature_layers)
    small = on_cpu_check
    warmup, iters = (1, 2) if small else (3, 10 if args.quick else 30)
    big_batches = [2, 4] if small else [64, 128, 256]
    clip = torch.from_numpy(synthetic_clip(10.0, 24_000))[:samples]

    def host_batch(n: int) -> torch.Tensor:
        batch = clip.expand(n, -1).contiguous()
        return batch.pin_memory() if device.type == "cuda" else batch

    def stock_step(tower, n: int, dtype: torch.dtype):
        batch = host_batch(n)

        def step():
            with torch.no_grad():
                states = tower(batch.to(device, dtype, non_blocking=True), output_hidden_states=True).hidden_states
                return torch.stack([states[i].float().mean(1) for i in layers], 1).cpu()
        return step

    results: dict[str, Any] = {}
    # (a) the reference code's path: eager attention, float32, batch 32, all hidden states
    def reference_eager():
        config = copy.deepcopy(model.config.audio_config)
        config._attn_implementation = "eager"
        tower = HubertModel(config).eval().to(device)
        tower.load_state_dict(model.audio_model.state_dict())
        n = 2 if small else 32
        try:
            return throughput(stock_step(tower, n, torch.float32), n, device, warmup, iters)
        finally:
            del tower
    results["stock_eager_fp32_batch32"] = gpu_variant("stock eager fp32 batch 32", reference_eager)

    # (b) stock SDPA, bf16 weights, batch 128
    def stock_sdpa_bf16():
        dtype = torch.float32 if small else torch.bfloat16
        tower = copy.deepcopy(model.audio_model).to(dtype)
        n = big_batches[-2]
        try:
            return throughput(stock_step(tower, n, dtype), n, device, warmup, iters)
        finally:
            del tower
    results["stock_sdpa_bf16_batch128"] = gpu_variant("stock sdpa bf16 batch 128", stock_sdpa_bf16)

    # (c) our extraction path (meralign.features._pool_batch: early exit, inference mode, autocast, both poolings)
    from meralign.features import _pool_batch
    from meralign.utils import make_accelerator

    accelerator = make_accelerator("bf16")

    def ours_step(n: int, ours_model):
        mask = torch.ones(n, samples, dtype=torch.long)
        batch = {"input_values": host_batch(n), "attention_mask": mask.pin_memory() if device.type == "cuda" else mask,
                 "shard": 0}
        return lambda: _pool_batch(ours_model, batch, device, accelerator, layers)

    ours = {}
    for n in big_batches:
        ours[f"batch{n}"] = gpu_variant(f"ours autocast bf16 batch {n}",
                                        lambda n=n: throughput(ours_step(n, model), n, device, warmup, iters))
    results["ours_extraction_autocast_bf16"] = ours
    # (d) the same path with bf16 weights (no per-op casts of float32 weights under autocast)
    bf16_model = copy.deepcopy(model)
    if not small:
        bf16_model.audio_model.to(torch.bfloat16)
    ours_bf16 = {}
    for n in big_batches:
        ours_bf16[f"batch{n}"] = gpu_variant(f"ours bf16 weights batch {n}",
                                             lambda n=n: throughput(ours_step(n, bf16_model), n, device, warmup, iters))
    results["ours_extraction_bf16_weights"] = ours_bf16
    # (e) optional torch.compile of the tower's hidden-state path
    if args.compile:
        compiled = copy.deepcopy(bf16_model)
        compiled.audio_hidden_states = torch.compile(compiled.audio_hidden_states, dynamic=False)
        n = big_batches[-2]
        results["ours_bf16_weights_compiled"] = gpu_variant(
            f"ours bf16 weights + torch.compile batch {n}", lambda: throughput(ours_step(n, compiled), n, device, warmup, iters))

    best = best_variant(results)
    results["end_to_end_extract_features"] = gpu_variant(
        "end-to-end extract_features (decoding overlapped)",
        lambda: end_to_end_extraction(bf16_model if best["weights"] == "bf16" else model, best["batch_size"], args, small))
    peak = matmul_peak_tflops(device)
    gflop = tower_gflop_per_segment(model.audio_model, samples, device) if not small else None
    for entry in iter_results(results):
        if peak and gflop and entry.get("segments_per_s"):
            entry["model_flop_utilisation"] = round(entry["segments_per_s"] * gflop / 1e3 / peak, 3)
    return {
        "variants": results, "best_model_only": best, "device": environment()["cuda"] or "cpu (code-path check only)",
        "gflop_per_segment": gflop, "measured_bf16_matmul_peak_tflops": peak,
        "goal_1400_segments_per_s": None if small else bool(
            (results["end_to_end_extract_features"].get("segments_per_s") or 0) >= 1400),
        "load_average_before": load_before, "load_average_after": load_average(), "environment": environment(),
        "method": "10 s clips at 24 kHz; each step copies a pinned host batch to the GPU, runs the tower and brings "
                  "pooled features back; GPU busy % from NVML; model FLOP utilisation = segments/s x GFLOP per "
                  "segment / measured bf16 matmul peak",
    }


def iter_results(results: dict):
    for value in results.values():
        if isinstance(value, dict) and "segments_per_s" in value:
            yield value
        elif isinstance(value, dict):
            yield from iter_results(value)


def best_variant(results: dict) -> dict:
    best = {"segments_per_s": 0.0, "batch_size": 8, "weights": "fp32"}
    for key, weights in (("ours_extraction_autocast_bf16", "fp32"), ("ours_extraction_bf16_weights", "bf16")):
        for entry in results[key].values():
            if entry.get("segments_per_s", 0) > best["segments_per_s"]:
                best = {"segments_per_s": entry["segments_per_s"], "batch_size": entry["batch_size"], "weights": weights}
    return best


def end_to_end_extraction(model, batch_size: int, args, small: bool) -> dict:
    """extract_features over a WAV corpus, decoding in DataLoader workers while the GPU runs."""
    import soundfile as sf

    from meralign.data.tracks import Track
    from meralign.features import extract_features

    n_segments = 64 if small else (4096 if args.quick else 16384)
    per_track = 40  # 400 s tracks
    clip = synthetic_clip(10.0, 24_000)
    with tempfile.TemporaryDirectory(prefix="meralign-gpu-bench-") as tmp:
        tracks = []
        for t in range(max(1, n_segments // per_track)):
            path = Path(tmp) / f"track{t:05d}.wav"
            sf.write(str(path), np.tile(clip * (0.5 + 0.5 * (t % 3) / 2), per_track), 24_000, subtype="PCM_16")
            tracks.append(Track(track_id=f"t{t}", audio=str(path), labels=("calm",), split="train", dataset="bench"))
        workers = 0 if small else max(1, min(12, (os.cpu_count() or 2) - 2))
        with UtilisationSampler() as sampler:
            report = extract_features(model, tracks, Path(tmp) / "cache", batch_size=batch_size, tracks_per_shard=8,
                                      num_workers=workers, mixed_precision="bf16", progress=False)
    return {"segments": report.n_segments, "seconds": report.seconds, "batch_size": batch_size, "num_workers": workers,
            "segments_per_s": round(report.n_segments / report.seconds, 1), "gpu_busy_percent": sampler.mean(),
            "note": "includes decoding, pooling both ways, float16 shard writes and the weights fingerprint"}


# ---------------------------------------------------------------------------- part 4: head training
def bench_training(args) -> dict:
    load_before = load_average()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {}
    for device in devices:
        spec = json.dumps({"threads": args.threads, "epochs": 2 if args.quick else 4})
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if device == "cpu" else os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--training-child", spec],
                              capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"head training benchmark on {device} failed:\n{proc.stderr[-3000:]}")
        results[device] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  training {device}: {results[device]['segments_per_s']:.0f} segments/s")
    return {"devices": results, "threads": args.threads, "load_average_before": load_before,
            "load_average_after": load_average(), "environment": environment(),
            "method": "meralign.training.Trainer.train_epoch on cached MERT-95M-shaped features (4 layers x 768, "
                      "float16, in memory), MLP head 768, two datasets (emotify, cal500) x 256 segments per step, "
                      "triplet + push regulariser; the first epoch is a warm-up"}


class _MemoryCache:
    """What Trainer reads from a feature cache (`index`, `meta`, `features`, `select`), held in memory."""

    def __init__(self, index: list[dict], features: np.ndarray, meta: dict):
        self.index, self._features, self.meta = index, features, meta

    def features(self, pooling: str = "mean") -> np.ndarray:
        return self._features

    def select(self, datasets=None, splits=None) -> np.ndarray:
        return np.array([i for i, e in enumerate(self.index) if (datasets is None or e["dataset"] in datasets)
                         and (splits is None or e["split"] in splits)], dtype=np.int64)


def training_child(spec: dict) -> None:
    from meralign.training import FitArguments, Trainer
    from meralign.vocabularies import BUILTIN

    torch.set_num_threads(spec["threads"])
    rng = np.random.default_rng(0)
    index = []
    for dataset in ("emotify", "cal500"):
        labels = BUILTIN[dataset].labels
        for t in range(400):
            split = ("train",) * 8 + ("validation", "test")
            for s in range(6):
                index.append({"track_id": f"{dataset}-{t}", "dataset": dataset, "split": split[t % 10],
                              "labels": [labels[t % len(labels)]], "segment": s, "start": 10.0 * s, "end": 10.0 * s + 10})
    features = rng.standard_normal((len(index), 4, 768)).astype(np.float16)
    cache = _MemoryCache(index, features, {"feature_layers": [3, 6, 9, 12], "hidden_size": 768})
    with tempfile.TemporaryDirectory() as tmp, quiet_warnings():
        fit_args = FitArguments(cache_dir=tmp, output_dir=tmp, log_with="none", progress=False, batch_size=256)
        trainer = Trainer(fit_args, cache=cache)
        trainer.train_epoch(0)  # warm-up
        steps = len(trainer._epoch_batches(1)[0])
        seconds = 0.0
        for epoch in range(1, spec["epochs"]):
            seconds += timed(lambda: trainer.train_epoch(epoch))[0]
    segments = steps * 256 * 2 * (spec["epochs"] - 1)
    print(json.dumps({"device": str(trainer.accelerator.device), "segments": segments, "seconds": round(seconds, 3),
                      "segments_per_s": round(segments / seconds, 1), "steps_per_epoch": steps}))


# ---------------------------------------------------------------------------------- Markdown table
def markdown_tables(results: Path = RESULTS) -> str:
    """The README's Performance tables, from the JSON files in `results` (default benchmarks/results/)."""
    def load(*names: str) -> dict | None:
        for name in names:  # the first that exists: a --full memory run is preferred to a --quick one
            path = results / f"{name}.json"
            if path.exists():
                return json.loads(path.read_text())
        return None

    lines = []
    cpu = load("cpu_vs_clap")
    if cpu:
        env = cpu["environment"]
        lines += [f"**CPU, {cpu['clip_seconds']:g} s clip, {cpu['n_labels']} labels, {cpu['threads']} threads** "
                  f"({env['cpu']}, {env['cpu_count']} cores, torch {env['torch']}; load average "
                  f"{cpu['load_average_before'][0]} before, {cpu['load_average_after'][0]} after, this run included; fastest of "
                  f"{len(cpu['peers']['meralign_fp32']['new_labels']['runs_s'])}+ runs)", "",
                  "| pipeline | audio analysed | new labels | repeated (labels cached) | wall time vs CLAP "
                  "(new / repeated) | per analysed audio-second (new / repeated) | vs CLAP per audio-second |",
                  "|---|---|---|---|---|---|---|"]
        for name, label in (("clap", "CLAP (transformers zero-shot-audio-classification)"),
                            ("meralign_fp32", "meralign, float32 (default)"),
                            ("meralign_int8", "meralign, `quantize_for_cpu()` int8")):
            peer = cpu["peers"][name]
            new, rep = peer["new_labels"], peer["repeated"]
            def ratio(key: str) -> str:
                if name == "clap":
                    return "1"
                return " / ".join(f"{cpu['ratios'][f'{name}/{case}'][key]:.2f}x" for case in ("new_labels", "repeated"))
            lines.append(f"| {label} | {peer['analysed_audio_seconds']:g} s | {new['min_s']:.2f} s | {rep['min_s']:.2f} s | "
                         f"{ratio('wall_time_ratio_vs_clap')} | {new['per_analysed_audio_second_s']:.3f} / "
                         f"{rep['per_analysed_audio_second_s']:.3f} s | {ratio('per_analysed_audio_second_ratio_vs_clap')} |")
        gflop = cpu.get("audio_gflop")
        if gflop:
            lines += ["", f"Audio-side compute per 10 s window: CLAP {gflop['clap_gflop_per_10s']:g} GFLOP, "
                          f"meralign (MERT-95M-shaped) {gflop['meralign_gflop_per_10s']:g} GFLOP "
                          f"({gflop['meralign_over_clap']:g}x)."]
        acc = cpu["int8_accuracy"]
        lines += ["", f"int8 vs float32 audio embedding cosine on {acc['clips']} synthetic music clips: "
                      f"min {acc['embedding_cosine_min']:.4f} (pooled layers: min {acc['pooled_layer_cosine_min']:.4f}).",
                  "", "| audio tower, 3 x 10 s segments | time | per audio-second | vs stock |", "|---|---|---|---|"]
        for name, entry in cpu["levers"].items():
            if not name.startswith("_"):
                lines.append(f"| {name} | {entry['min_s']:.2f} s | {entry['per_audio_second_s']:.3f} s | "
                             f"{entry['speedup_vs_stock']:.2f}x |")
    mem = load("long_file_memory", "long_file_memory_quick")
    if mem:
        lines += ["", f"**Peak RSS, classifying one long file** ({mem['mode']} run; load average "
                      f"{mem['load_average_before'][0]} before)", "",
                  "| case | minutes | peak RSS | RSS after loading | time |", "|---|---|---|---|---|"]
        for case in mem["cases"]:
            extra = " (" + ", ".join(f"{k}={v}" for k, v in case["env"].items()) + ")" if case.get("env") else ""
            lines.append(f"| {case['system']}{extra} | {case['minutes']:g} | {case['peak_rss_mb']:.0f} MB | "
                         f"{case['baseline_rss_mb']:.0f} MB | {case['seconds']:.1f} s |")
    gpu = load("gpu_extraction")
    if gpu:
        if gpu.get("skipped"):
            lines += ["", f"**GPU feature extraction**: not measured ({gpu['reason']})."]
        else:
            lines += ["", f"**GPU feature extraction, 10 s clips** ({gpu['device']}, "
                          f"{gpu['gflop_per_segment']} GFLOP per segment, measured bf16 matmul peak "
                          f"{gpu['measured_bf16_matmul_peak_tflops']} TFLOP/s)", "",
                      "| variant | batch | segments/s | GPU busy | model FLOP utilisation | peak memory |",
                      "|---|---|---|---|---|---|"]
            for name, value in gpu["variants"].items():
                entries = value.items() if "segments_per_s" not in value and "error" not in value else [("", value)]
                for sub, entry in entries:
                    title = f"{name} {sub}".strip()
                    if "error" in entry:
                        lines.append(f"| {title} | | failed: {entry['error'][:80]} | | | |")
                        continue
                    lines.append(f"| {title} | {entry.get('batch_size', '')} | {entry.get('segments_per_s')} | "
                                 f"{entry.get('gpu_busy_percent')}% | {entry.get('model_flop_utilisation')} | "
                                 f"{entry.get('peak_memory_gb', '')} GB |")
    training = load("head_training")
    if training:
        lines += ["", "**Head training on cached features** (Trainer.train_epoch, MLP head, 2 datasets x 256 per step)",
                  "", "| device | segments/s |", "|---|---|"]
        for device, entry in training["devices"].items():
            lines.append(f"| {device} | {entry['segments_per_s']:.0f} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs (default): CPU parts in a few minutes")
    mode.add_argument("--full", action="store_true", help="10/30/60-minute memory runs and more repeats (long)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every CPU measurement (both peers)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (CPU levers and GPU part)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each part, wait up to this long for the 1-minute load average to fall below "
                             "half the core count (other work on the machine slows every number down)")
    parser.add_argument("--table", action="store_true", help="print the README tables from the results folder and exit")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON files go (default: %(default)s)")
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
