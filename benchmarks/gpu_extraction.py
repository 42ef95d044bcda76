"""Part 3: GPU feature extraction throughput, utilisation and model FLOP utilisation (skipped without CUDA)."""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import environment, load_average, quiet_warnings, synthetic_clip


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
    out = {
        "batch_size": batch_size,
        "segments_per_s": round(batch_size * iters / seconds, 1),
        "seconds": round(seconds, 3),
        "gpu_busy_percent": sampler.mean(),
    }
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
        message = (
            "no CUDA GPU on this machine: GPU feature extraction skipped "
            "(on a GPU machine: python benchmarks/run.py --quick --only gpu)"
        )
        print(message)
        return {"skipped": True, "reason": message, "environment": environment()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # the anchors saw no change; keep runs comparable
    load_before = load_average()
    from transformers import HubertModel

    from meralign.testing import build_mert_95m_model, build_tiny_model

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

    # (c) our extraction path (meralign.features.extract._pool_batch: early exit, inference mode, autocast,
    # both poolings)
    from meralign.features.extract import _pool_batch
    from meralign.runtime import make_accelerator

    accelerator = make_accelerator("bf16")

    def ours_step(n: int, ours_model):
        mask = torch.ones(n, samples, dtype=torch.long)
        batch = {
            "input_values": host_batch(n),
            "attention_mask": mask.pin_memory() if device.type == "cuda" else mask,
            "shard": 0,
        }
        return lambda: _pool_batch(ours_model, batch, device, accelerator, layers)

    ours = {}
    for n in big_batches:
        ours[f"batch{n}"] = gpu_variant(
            f"ours autocast bf16 batch {n}", lambda n=n: throughput(ours_step(n, model), n, device, warmup, iters)
        )
    results["ours_extraction_autocast_bf16"] = ours
    # (d) the same path with bf16 weights (no per-op casts of float32 weights under autocast)
    bf16_model = copy.deepcopy(model)
    if not small:
        bf16_model.audio_model.to(torch.bfloat16)
    ours_bf16 = {}
    for n in big_batches:
        ours_bf16[f"batch{n}"] = gpu_variant(
            f"ours bf16 weights batch {n}", lambda n=n: throughput(ours_step(n, bf16_model), n, device, warmup, iters)
        )
    results["ours_extraction_bf16_weights"] = ours_bf16
    # (e) optional torch.compile of the tower's hidden-state path
    if args.compile:
        compiled = copy.deepcopy(bf16_model)
        compiled.audio_hidden_states = torch.compile(compiled.audio_hidden_states, dynamic=False)
        n = big_batches[-2]
        results["ours_bf16_weights_compiled"] = gpu_variant(
            f"ours bf16 weights + torch.compile batch {n}",
            lambda: throughput(ours_step(n, compiled), n, device, warmup, iters),
        )

    best = best_variant(results)
    results["end_to_end_extract_features"] = gpu_variant(
        "end-to-end extract_features (decoding overlapped)",
        lambda: end_to_end_extraction(
            bf16_model if best["weights"] == "bf16" else model, best["batch_size"], args, small
        ),
    )
    peak = matmul_peak_tflops(device)
    gflop = tower_gflop_per_segment(model.audio_model, samples, device) if not small else None
    for entry in iter_results(results):
        if peak and gflop and entry.get("segments_per_s"):
            entry["model_flop_utilisation"] = round(entry["segments_per_s"] * gflop / 1e3 / peak, 3)
    return {
        "variants": results,
        "best_model_only": best,
        "device": environment()["cuda"] or "cpu (code-path check only)",
        "gflop_per_segment": gflop,
        "measured_bf16_matmul_peak_tflops": peak,
        "goal_1400_segments_per_s": None
        if small
        else bool((results["end_to_end_extract_features"].get("segments_per_s") or 0) >= 1400),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "environment": environment(),
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
                best = {
                    "segments_per_s": entry["segments_per_s"],
                    "batch_size": entry["batch_size"],
                    "weights": weights,
                }
    return best


def end_to_end_extraction(model, batch_size: int, args, small: bool) -> dict:
    """extract_features over a WAV corpus, decoding in DataLoader workers while the GPU runs."""
    import soundfile as sf

    from meralign.data.tracks import Track
    from meralign.features.extract import extract_features

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
            report = extract_features(
                model,
                tracks,
                Path(tmp) / "cache",
                batch_size=batch_size,
                tracks_per_shard=8,
                num_workers=workers,
                mixed_precision="bf16",
                progress=False,
            )
    return {
        "segments": report.n_segments,
        "seconds": report.seconds,
        "batch_size": batch_size,
        "num_workers": workers,
        "segments_per_s": round(report.n_segments / report.seconds, 1),
        "gpu_busy_percent": sampler.mean(),
        "note": "includes decoding, pooling both ways, float16 shard writes and the weights fingerprint",
    }
