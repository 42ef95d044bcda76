"""Load test of the Gradio Space on loopback: many concurrent clients, latency percentiles, memory growth.

The Space (space/app.py, loaded by path as a Space runs it) serves a model folder on 127.0.0.1; `workers`
threads, each with its own gradio_client.Client, send `requests` uploads of short WAV clips with varied label
lists (some repeated, some new, so the pipeline's label cache is exercised). Latency is measured per request on
the client side (upload + queue + scoring); the server's resident memory (this process) is sampled throughout.

    python benchmarks/space_load.py                          # 200 requests, 8 clients, tiny random model
    python benchmarks/space_load.py --requests 40 --out -    # print only

Gradio runs one scoring at a time (the event's default concurrency limit), so with 8 clients a request mostly
waits in the queue: p50 is about 8 service times. With the tiny random audio tower the figures measure the
Space's own overhead (upload, decoding, queueing, label embedding), not a real MERT model.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "space_load.json"
LABEL_SETS = [
    ["joyful", "melancholic", "tense", "serene"],
    ["happy", "sad", "angry", "calm", "energetic"],
    [
        "sadness",
        "calmness",
        "tension",
        "power",
        "joyful_activation",
        "tenderness",
        "nostalgia",
        "wonder",
        "transcendence",
    ],
]


def load_app(module_name: str = "meralign_space_app_load"):
    """space/app.py as a fresh module, the way the Space runs it (without the meralign package)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def make_clips(folder: Path) -> list[Path]:
    """Short synthetic clips at the rates uploads come in (0.8-2.5 s; 16, 22.05, 44.1, 48 kHz; mono and stereo)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, (seconds, rate, channels) in enumerate(
        [(1.0, 16000, 1), (2.5, 44100, 2), (0.8, 22050, 1), (1.5, 48000, 2)]
    ):
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * (1 + i) * t))
        path = folder / f"clip{i}.wav"
        sf.write(path, np.repeat(wave[:, None], channels, axis=1).astype(np.float32), rate, subtype="PCM_16")
        clips.append(path)
    return clips


def build_model_folder(folder: Path) -> Path:
    """The tiny random model (MERT-shaped tower, real MiniLM text tower) saved like an export."""
    from meralign.publish.folder import save_model_folder
    from meralign.testing import build_tiny_model

    model = build_tiny_model()
    model.config.segment_seconds = 1.0
    save_model_folder(model, folder)
    return folder


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def rss_after_malloc_trim() -> float | None:
    """RSS once glibc has returned its free heap pages to the system. What remains of the growth is memory still
    in use; what goes away was freed memory the allocator kept (fragmentation across threads), not a leak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return None
    return rss_mb()


class RssSampler:
    """The peak resident memory of this process, sampled every `interval` seconds in a background thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def _labels_for(i: int) -> str:
    """Mostly the three fixed sets; every fifth request adds a label never seen before."""
    labels = list(LABEL_SETS[i % len(LABEL_SETS)])
    if i % 5 == 4:
        labels.append(f"mood number {i}")
    return "\n".join(labels)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(
    app,
    model_dir: Path,
    *,
    requests: int = 200,
    workers: int = 8,
    timeout_s: float = 180.0,
    warmup: int = 3,
    work_dir: Path | None = None,
    trace_python_heap: bool = False,
) -> dict:
    """Serve `model_dir` with `app` on loopback and send `requests` scorings from `workers` clients.

    `trace_python_heap` also reports the Python objects allocated during the burst and still alive after it
    (tracemalloc; slows requests down, so latencies of such a run are not comparable)."""
    from gradio_client import Client, handle_file

    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="meralign-space-load-"))
    clips = make_clips(work_dir / "clips")
    demo = app.build_demo(str(model_dir), max_seconds=30, max_upload_mb=5)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    # one client per worker, created and used once before the measurement: their own memory is not the server's
    clients = [
        Client(demo.local_url, verbose=False, analytics_enabled=False, download_files=str(work_dir / "downloads"))
        for _ in range(workers)
    ]
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for c in clients:
        idle.put(c)
    finished, series, series_lock = [0], [], threading.Lock()  # RSS every 25 completed requests of the burst

    def one(i: int) -> tuple[float, str | None]:
        client = idle.get()
        start = time.perf_counter()
        try:
            result, *_ = client.predict(
                handle_file(str(clips[i % len(clips)])), _labels_for(i), i % 2 == 1, 3, api_name="/classify"
            )
            scores = [c["confidence"] for c in result["confidences"]]
            if len(scores) != 3 or not all(0.0 <= s <= 1.0 for s in scores) or scores != sorted(scores, reverse=True):
                return time.perf_counter() - start, f"request {i}: malformed result {result!r}"
        except Exception as err:  # noqa: BLE001 - every failure is counted and reported, none may pass silently
            return time.perf_counter() - start, f"request {i}: {type(err).__name__}: {err}"
        finally:
            idle.put(client)
            with series_lock:
                finished[0] += 1
                if finished[0] % 25 == 0:
                    series.append([finished[0], round(rss_mb(), 1)])
        return time.perf_counter() - start, None

    try:
        with ThreadPoolExecutor(workers) as pool:  # warm-up: loads the pipeline, embeds the fixed label sets
            for _, error in pool.map(one, range(max(warmup, workers))):
                if error:
                    raise RuntimeError(f"warm-up failed: {error}")
        gc.collect()
        rss_before = rss_mb()
        finished[0], series[:] = 0, []
        if trace_python_heap:
            tracemalloc.start()
        rss_half: list[float] = []
        start = time.perf_counter()
        with RssSampler() as sampler, ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, workers + i) for i in range(requests)]
            wait(futures[: requests // 2], timeout=timeout_s)
            rss_half.append(rss_mb())
            done, pending = wait(futures, timeout=max(0.0, timeout_s - (time.perf_counter() - start)))
            for future in pending:
                future.cancel()
        wall = time.perf_counter() - start
        gc.collect()
        rss_after = rss_mb()
        heap_growth = tracemalloc.get_traced_memory()[0] / 2**20 if trace_python_heap else None
        rss_trimmed = rss_after_malloc_trim()
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        for c in clients:
            c.close()
        demo.close()
    outcomes = [f.result() for f in done]
    latencies = sorted(t for t, error in outcomes if error is None)
    errors = [error for _, error in outcomes if error is not None]
    return {
        "requests": requests,
        "completed": len(latencies),
        "errors": len(errors) + len(pending),
        "error_samples": errors[:5] + [f"{len(pending)} request(s) still pending after {timeout_s} s"] * bool(pending),
        "workers": workers,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2) if wall else None,
        "latency_s": {q: round(percentile(latencies, float(q[1:])), 3) for q in ("p50", "p90", "p99")}
        | {
            "max": round(max(latencies), 3) if latencies else None,
            "mean": round(float(np.mean(latencies)), 3) if latencies else None,
        },
        "rss_mb": {
            "before": round(rss_before, 1),
            "after": round(rss_after, 1),
            "peak": round(sampler.peak, 1),
            "growth": round(rss_after - rss_before, 1),
            "growth_second_half": round(rss_after - rss_half[0], 1),
            "after_malloc_trim": None if rss_trimmed is None else round(rss_trimmed, 1),
            "every_25_requests": series,
        },
        "python_heap_growth_mb": None if heap_growth is None else round(heap_growth, 2),
        "label_cache_entries": len(getattr(app.get_pipeline(app.current_settings().model_id), "_label_cache", {})),
        "clips": [
            {
                "name": p.name,
                "seconds": round(sf.info(p).duration, 2),
                "rate": sf.info(p).samplerate,
                "channels": sf.info(p).channels,
            }
            for p in clips
        ],
    }


def environment() -> dict:
    import gradio
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gradio": gradio.__version__,
        "torch": torch.__version__,
        # other work on the machine during the run: latencies on a loaded machine are longer
        "load_average_1m_after": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=180.0, help="Seconds for all requests together.")
    parser.add_argument("--model", type=Path, default=None, help="A model folder (default: the tiny random model).")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result path, or '-' to print only.")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.workers < 1 or args.timeout <= 0:
        parser.error("--requests and --workers must be >= 1 and --timeout > 0")

    work_dir = Path(tempfile.mkdtemp(prefix="meralign-space-load-"))
    model_dir = args.model or build_model_folder(work_dir / "model")
    result = {
        "benchmark": "space_load",
        "model": "tiny random MERT-shaped tower + all-MiniLM-L6-v2" if args.model is None else Path(args.model).name,
        "settings": {
            "max_seconds": 30,
            "max_upload_mb": 5,
            "top_k": 3,
            "segment_seconds": 1.0 if args.model is None else None,
        },
        **run_load(
            load_app(),
            model_dir,
            requests=args.requests,
            workers=args.workers,
            timeout_s=args.timeout,
            work_dir=work_dir,
        ),
        "environment": environment(),
        "date": time.strftime("%Y-%m-%d"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out != "-":
        from meralign.files import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
