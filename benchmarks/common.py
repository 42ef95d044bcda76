"""What every benchmark part shares: the machine's description, timing, memory readings, results files, and
the two peers (meralign and CLAP) built with random weights from their configs."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
# MERT-95M-shaped tower up to layer 12, one 10 s segment, as FlopCounterMode counts it (cpu_vs_clap.audio_gflop)
TOWER_GFLOP_PER_10S = 208.5
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


def cpu_flags() -> list[str]:
    """The CPU's vector extensions that decide kernel speed (AVX2, AVX-512, VNNI, BF16, AMX)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def environment() -> dict:
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return env


def write_result(name: str, payload: dict, results: Path = RESULTS) -> Path:
    from meralign.files import atomic_write_json

    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    atomic_write_json(path, payload)
    print(f"wrote {path}")
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 10, cpu: bool = False) -> float:
    """float32 torch.mm of n x n at `threads` threads, best of `repeats`: the machine's practical peak right now.
    `cpu`: per CPU-second of this process instead of per second (x threads: comparable to wall-clock rates)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed_seconds(lambda: torch.mm(a, b), cpu) for _ in range(repeats))
    return 2 * n**3 / best / 1e9 * (threads if cpu else 1)


def timed_seconds(fn, cpu: bool = False) -> float:
    """Wall-clock seconds of fn(), or with `cpu` the CPU seconds of this process (all its threads)."""
    clock = time.process_time if cpu else time.perf_counter
    start = clock()
    fn()
    return clock() - start


def summary(times: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "runs_s": [round(t, 4) for t in times],
    }


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
        print(
            f"  note: load average {load_average()} on {os.cpu_count()} cores (a part that just ran counts too): "
            "other work slows these numbers"
        )
    return time.monotonic() - start


# --------------------------------------------------------------------------------------- the peers
def synthetic_clip(seconds: float, sampling_rate: int, seed: int = 7) -> np.ndarray:
    """Real-shaped music (melody, chords, percussion) from the synthetic corpus, float32 mono."""
    from meralign.data.synthetic.render import render_clip

    return render_clip(["joyful", "tense"], seed=seed, seconds=seconds, sampling_rate=sampling_rate)


def build_ours(quantize: bool = False, feature_layers=(3, 6, 9, 12)):
    """Our pipeline over a MERT-95M-shaped tower (random weights) and the packaged all-MiniLM-L6-v2."""
    from transformers import pipeline

    import pipeline_meralign
    from meralign.testing import build_mert_95m_model
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
    bpe.train_from_iterator(
        words,
        vocab_size=1000,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
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
    return pipeline(
        "zero-shot-audio-classification", model=model, feature_extractor=feature_extractor, tokenizer=clap_tokenizer()
    )


def call_peer(name: str, pipe, audio: np.ndarray, labels: list[str], template: str):
    if name == "clap":
        return pipe(audio, candidate_labels=labels, hypothesis_template=template + ".")
    return pipe(
        {"array": audio, "sampling_rate": SAMPLING_RATE_IN}, candidate_labels=labels, hypothesis_template=template
    )
