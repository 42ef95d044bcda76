"""Feature extraction: the audio tower over every segment of every track, into the cache (resumable, distributable).

Under `accelerate launch`, process p does shards i % num_processes == p and the main process writes the
manifest once all are done; the cache equals a one-process run's. docs/feature-cache.md has the layout.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from audio_meralign import receptive_field
from meralign.data.tracks import Track
from meralign.features.layout import CACHED_POOLINGS, MANIFEST, REPORT, read_json
from meralign.features.plan import check_tracks, check_vocabularies, fingerprint, plan_shards
from meralign.features.shards import (
    ExtractionReport,
    ShardBuffer,
    base_manifest,
    check_existing_cache,
    clean_temp_dirs,
    final_report,
    shard_is_complete,
    write_shard,
)
from meralign.features.stream import SegmentStream, ShardJob, passthrough
from meralign.files import atomic_write_json, write_error
from meralign.runtime import MIXED_PRECISIONS, check_launch, make_accelerator
from meralign.vocabularies import Vocabulary


class ExtractionWarning(UserWarning):
    """A track was skipped (unreadable or missing audio); it is listed in the extraction report."""


def _resolve_accelerator(accelerator, mixed_precision: str):
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {mixed_precision!r}")
    if accelerator is not None:
        return accelerator
    return make_accelerator(mixed_precision)


def _effective_precision(accelerator) -> str:
    value = getattr(accelerator, "mixed_precision", "no")
    return str(getattr(value, "value", value) or "no")


def _check_positive(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _pool_batch(model, batch: dict, device, accelerator, layers: list[int]) -> dict[str, np.ndarray]:
    """Selected layers, pooled by mean and by first frame, as float16 [b, n_layers, hidden]."""
    from modeling_meralign import pool_frames

    inputs = batch["input_values"].to(device, non_blocking=True)
    mask = batch["attention_mask"].to(device, non_blocking=True)
    with torch.inference_mode(), accelerator.autocast():
        states, frame_mask = model.audio_hidden_states(inputs, mask)
        pooled = {
            p: torch.stack([pool_frames(states[i].float(), frame_mask, p) for i in layers], dim=1)
            for p in CACHED_POOLINGS
        }
    out = {}
    for pooling, tensor in pooled.items():
        tensor = tensor.float().cpu()
        if not torch.isfinite(tensor).all() or tensor.abs().max() > np.finfo(np.float16).max:
            raise RuntimeError(
                f"{pooling}-pooled features are not finite or overflow float16 (shard {batch['shard']})"
            )
        out[pooling] = tensor.to(torch.float16).numpy()
    return out


def _run_shards(
    model,
    jobs: list[ShardJob],
    cache_dir: Path,
    fingerprint: dict,
    accelerator,
    *,
    batch_size: int,
    num_workers: int,
    progress: bool,
    on_batch: Callable[[int], None] | None,
) -> None:
    """Decode (DataLoader workers) and run the tower over this process's shards, writing each when done."""
    config = model.config
    layers, hidden = list(config.feature_layers), int(config.audio_config.hidden_size)
    device = accelerator.device
    stream = SegmentStream(
        jobs,
        int(config.sampling_rate),
        float(config.segment_seconds),
        batch_size,
        receptive_field(config.audio_config),
    )
    loader = DataLoader(
        stream, batch_size=None, num_workers=num_workers, collate_fn=passthrough, pin_memory=device.type == "cuda"
    )
    buffers = {job.index: ShardBuffer(job) for job in jobs}
    writer = {"process_index": accelerator.process_index, "num_processes": accelerator.num_processes}
    from tqdm.auto import tqdm

    bar = tqdm(unit="seg", desc="extract", disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    try:
        for item in loader:
            buffer = buffers[item["shard"]]
            if item["kind"] == "batch":
                buffer.add(item["rows"], _pool_batch(model, item, device, accelerator, layers))
                bar.update(len(item["rows"]))
                if on_batch is not None:
                    on_batch(len(item["rows"]))
            elif item["kind"] == "failed":
                track = buffer.job.tracks[item["track"]]
                buffer.failed[item["track"]] = item["reason"]
                warnings.warn(
                    f"skipping track {track.track_id!r} of dataset {track.dataset!r}: {item['reason']}",
                    ExtractionWarning,
                    stacklevel=3,
                )
            else:  # shard_end
                write_shard(cache_dir, buffers.pop(item["shard"]), fingerprint, len(layers), hidden, writer)
                bar.set_postfix(shards=len(jobs) - len(buffers), refresh=False)
    finally:
        bar.close()
    if buffers:
        raise RuntimeError(f"shards {sorted(buffers)} got no end of stream: the decoding workers stopped early")


def _agree(accelerator, step, what: str) -> None:
    """Run `step()` on this process, then meet the others: a barrier that carries failure.

    A plain barrier after a failed step would leave every other process waiting forever; here each process
    reports whether its step failed, and all of them stop if any did (the failed one with its own error).
    """
    error = None
    try:
        step()
    except Exception as err:  # re-raised below, after the others have heard of it
        error = err
    if accelerator.num_processes > 1:
        flag = torch.tensor([0.0 if error is None else 1.0], device=accelerator.device)
        failed = int(accelerator.reduce(flag, reduction="sum").item())
        if error is None and failed:
            raise RuntimeError(
                f"{failed} other process(es) failed while {what} (their errors say why); complete "
                "shards are kept: fix the cause and rerun the same extract command to resume"
            )
    if error is not None:
        raise error


def extract_features(
    model,
    tracks: Sequence[Track],
    cache_dir: str | os.PathLike,
    *,
    batch_size: int = 8,
    tracks_per_shard: int = 16,
    num_workers: int = 0,
    accelerator=None,
    mixed_precision: str = "bf16",
    vocabularies: Mapping[str, Vocabulary] | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Cache pooled features of every segment of `tracks` in `cache_dir` (resumable, distributable).

    A rerun skips complete shards; a rerun with other tracks, model or settings is refused. Tracks whose
    audio cannot be decoded are skipped with an ExtractionWarning and listed in the report. A process that
    fails stops every process with an error, none is left waiting. `mixed_precision` ("no", "bf16",
    "fp16") applies on GPU when no `accelerator` is given; the model's audio tower is put in eval mode and
    moved to the accelerator's device. `on_batch(n_segments)` is called after each batch (progress
    reporting, or a test that interrupts a run).
    """
    start_time = time.perf_counter()
    if not (hasattr(model, "audio_hidden_states") and hasattr(model, "config")):
        raise TypeError(f"model must be a MERAlignModel, got {type(model).__name__}")
    tracks = check_tracks(tracks)
    _check_positive("batch_size", batch_size)
    _check_positive("num_workers", num_workers, minimum=0)
    check_vocabularies(tracks, vocabularies)
    plan = plan_shards(tracks, tracks_per_shard)
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ValueError(f"cache_dir {str(cache_dir)!r} exists and is not a folder")

    accelerator = _resolve_accelerator(accelerator, mixed_precision)
    check_launch(accelerator)
    cache_fingerprint = fingerprint(model, plan, _effective_precision(accelerator), tracks_per_shard)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Every process checks before any barrier, so a refusal stops them all instead of hanging the others.
    existing = check_existing_cache(cache_dir, cache_fingerprint)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    mine = [i for i in range(len(plan)) if i % n_proc == rank]
    clean_temp_dirs(cache_dir, mine)
    skipped = {i for i in range(len(plan)) if shard_is_complete(cache_dir, i, cache_fingerprint, plan[i])}

    def start() -> None:
        if accelerator.is_main_process and existing is None:
            try:
                atomic_write_json(cache_dir / MANIFEST, base_manifest(model, plan, cache_fingerprint))
            except OSError as err:
                raise write_error(
                    err,
                    f"could not start the feature cache in {str(cache_dir)!r}",
                    "nothing was computed: fix the cause (e.g. free disk space) and rerun",
                ) from err

    _agree(accelerator, start, "starting the cache")
    jobs = [ShardJob(i, tuple(plan[i])) for i in mine if i not in skipped]

    def run() -> None:
        was_training = model.audio_model.training
        model.audio_model.eval().to(accelerator.device)
        try:
            if jobs:
                _run_shards(
                    model,
                    jobs,
                    cache_dir,
                    cache_fingerprint,
                    accelerator,
                    batch_size=batch_size,
                    num_workers=num_workers,
                    progress=progress,
                    on_batch=on_batch,
                )
        finally:
            model.audio_model.train(was_training)

    _agree(accelerator, run, "extracting their shards")

    def finish() -> None:
        if accelerator.is_main_process:
            clean_temp_dirs(cache_dir)
            report = final_report(cache_dir, plan, skipped, time.perf_counter() - start_time)
            manifest = base_manifest(model, plan, cache_fingerprint)
            manifest.update(complete=True, n_segments=report.n_segments, failed=report.failed, report=report.to_dict())
            try:
                atomic_write_json(cache_dir / REPORT, report.to_dict())
                atomic_write_json(cache_dir / MANIFEST, manifest)  # the cache becomes loadable only here
            except OSError as err:
                raise write_error(
                    err,
                    f"could not finish the feature cache {str(cache_dir)!r}",
                    "every shard is complete and kept: fix the cause (e.g. free disk space) and "
                    "rerun the same extract command to finish it (nothing is recomputed)",
                ) from err

    _agree(accelerator, finish, "finishing the cache")
    return ExtractionReport(**read_json(cache_dir / REPORT, "extraction report"))
