"""MERT feature extraction into an on-disk, resumable, distributable cache.

Extraction (the audio tower over every segment of every track) is the expensive step; heads are
trained many times on its output. So features are computed once and stored per segment as the
selected layers pooled over time, both by mean and by first frame (the paper's choice), in
float16: ``[n_segments, n_layers, hidden]`` per pooling.

Layout of a cache folder::

    manifest.json            meta, fingerprint, shard plan, and (when complete) the report
    extraction_report.json   the last run's ExtractionReport
    shard-00000/             one folder per shard, visible only once complete
        mean.npy  first.npy  float16 [n, n_layers, hidden], memory-mappable
        index.jsonl          one line per segment: track_id, dataset, split, labels, segment, start, end
        shard.json           the shard's tracks, segment count, failed tracks, fingerprint

Shards are groups of whole tracks sorted by (dataset, track_id). A shard's content depends only on
its tracks: segments are batched within a shard, never across, so a shard computed by any process,
in any run, with any number of decoding workers, holds the same numbers. Process ``p`` of ``n`` does
shards ``i % n == p``; a shard is written to a temporary folder and renamed into place once every
file is on disk, so an interrupted run leaves only complete shards and the rerun skips them.
Bitwise equality across runs assumes the same device, batch_size and thread count (a matmul's
reduction order depends on them); otherwise values may differ in the last float16 bit.

Running it::

    python train.py extract --model DIR --manifests a.jsonl b.csv --vocabularies emotify cal500 --cache_dir C
    accelerate launch --multi_gpu --num_processes 4 train.py extract ...   # GPUs, or CPU-only machines

(``accelerate launch --cpu --num_processes N`` starts a single process unless mpirun is set up.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from audio_meralign import iter_segments, receptive_field
from meralign.data.tracks import Track
from meralign.vocabularies import Vocabulary
from meralign.utils import atomic_write_json, check_launch, fsync_dir, make_accelerator, parse_args, write_error, write_synced

CACHE_FORMAT = "meralign-feature-cache"
CACHE_VERSION = 1
POOLINGS = ("mean", "first")
MIXED_PRECISIONS = ("no", "bf16", "fp16")
MIN_LAST_FRACTION = 0.5  # a trailing partial segment is kept when at least half a segment long
MANIFEST = "manifest.json"
REPORT = "extraction_report.json"
SHARD_META = "shard.json"
SHARD_INDEX = "index.jsonl"
# Seconds to pause after each batch. Lets tests interrupt a run mid-way; leave unset otherwise.
SLEEP_ENV = "MERALIGN_EXTRACT_SLEEP"
# Config keys that say nothing about the numbers a tower computes.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "auto_map"}


class ExtractionWarning(UserWarning):
    """A track was skipped (unreadable or missing audio); it is listed in the extraction report."""


@dataclass
class ExtractionReport:
    """What a run left in the cache. ``n_tracks`` counts every planned track, ``n_failed`` those
    skipped for bad audio (``failed``: track_id, dataset, reason); ``shards_done`` were computed by
    this run, ``shards_skipped`` were already complete; ``seconds`` is this run's wall time."""

    n_tracks: int
    n_segments: int
    n_failed: int
    failed: list[dict] = field(default_factory=list)
    shards_done: int = 0
    shards_skipped: int = 0
    n_shards: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------ file helpers
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{what} {str(path)!r} is unreadable ({err}): rerun `python train.py extract` into a fresh cache_dir"
        ) from None


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


# ------------------------------------------------------------------------------ inputs and planning
def _check_tracks(tracks: Any) -> list[Track]:
    if isinstance(tracks, (str, bytes)) or not hasattr(tracks, "__iter__"):
        raise TypeError(f"tracks must be a list of Track, got {type(tracks).__name__}")
    tracks = list(tracks)
    if not tracks:
        raise ValueError("tracks is empty: give at least one Track to extract")
    for track in tracks:
        if not isinstance(track, Track):
            raise TypeError(f"tracks must contain only Track records, got {type(track).__name__}")
        if isinstance(track.labels, str) or not all(isinstance(label, str) for label in track.labels):
            raise TypeError(f"labels of track {track.track_id!r} must be a sequence of strings, got {track.labels!r}")
    return tracks


def check_vocabularies(tracks: Sequence[Track], vocabularies: Mapping[str, Vocabulary] | None) -> None:
    """Refuse any label outside its dataset's vocabulary, naming the track and the label."""
    if vocabularies is None:
        return
    if not isinstance(vocabularies, Mapping):
        raise TypeError(f"vocabularies must be a dict of dataset name -> Vocabulary, got {type(vocabularies).__name__}")
    for track in tracks:
        vocab = vocabularies.get(track.dataset)
        if vocab is None:
            raise ValueError(
                f"vocabularies has no entry for dataset {track.dataset!r} (track {track.track_id!r}); "
                f"it has {sorted(vocabularies)}"
            )
        known = set(vocab.labels)
        for label in track.labels:
            if label not in known:
                raise ValueError(
                    f"track {track.track_id!r} of dataset {track.dataset!r} has label {label!r}, "
                    f"which is not in vocabulary {vocab.name!r}"
                )


def plan_shards(tracks: Sequence[Track], tracks_per_shard: int) -> list[list[Track]]:
    """Whole tracks sorted by (dataset, track_id), chunked: the same tracks always give the same plan."""
    if isinstance(tracks_per_shard, bool) or not isinstance(tracks_per_shard, int) or tracks_per_shard < 1:
        raise ValueError(f"tracks_per_shard must be a positive int, got {tracks_per_shard!r}")
    ordered = sorted(tracks, key=lambda t: (t.dataset, t.track_id))
    for a, b in zip(ordered, ordered[1:]):
        if (a.dataset, a.track_id) == (b.dataset, b.track_id):
            raise ValueError(f"tracks has track {a.track_id!r} of dataset {a.dataset!r} more than once")
    return [ordered[i : i + tracks_per_shard] for i in range(0, len(ordered), tracks_per_shard)]


def _audio_config_dict(model) -> dict:
    config = model.config.audio_config.to_dict()
    return {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}


def _weights_digest(module: torch.nn.Module) -> str:
    """A digest of the tower's weights: two checkpoints with one config must not share a cache."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _fingerprint(model, plan: list[list[Track]], mixed_precision: str, tracks_per_shard: int) -> dict:
    """What the cached numbers depend on, split into parts so a mismatch can say which part differs."""
    config = model.config
    return {
        "model": _sha({"audio_config": _audio_config_dict(model), "weights": _weights_digest(model.audio_model)}),
        "settings": {
            "feature_layers": list(config.feature_layers),
            "sampling_rate": int(config.sampling_rate),
            "segment_seconds": float(config.segment_seconds),
            "min_last_fraction": MIN_LAST_FRACTION,
            "mixed_precision": mixed_precision,
            "tracks_per_shard": tracks_per_shard,
            "poolings": list(POOLINGS),
        },
        "tracks": _sha([[t.dataset, t.track_id, list(t.labels), t.split] for shard in plan for t in shard]),
    }


def segment_attention_mask(valid: int, n_samples: int, receptive_field: int) -> np.ndarray:
    """Ones over the first max(valid, receptive_field) samples: padding stays out of mean pooling,
    yet even a very short last piece yields at least one frame."""
    mask = np.zeros(n_samples, dtype=np.int64)
    mask[: min(n_samples, max(valid, receptive_field))] = 1
    return mask


# -------------------------------------------------------------------------------- decoding stream
@dataclass(frozen=True)
class _ShardJob:
    index: int
    tracks: tuple[Track, ...]


class SegmentStream(IterableDataset):
    """Decodes the tracks of a process's shards into batches, in DataLoader workers.

    Each worker takes whole shards (worker k: shards k, k + n, ...) and batches segments within a
    shard only, so batch composition, and hence every float, depends on the shard alone. Items:
    ``{"kind": "batch", ...}`` (stacked segments, masks, and per-row (track, segment, start, end)),
    ``{"kind": "failed", "track": position, "reason": ...}``, and ``{"kind": "shard_end"}``.
    """

    def __init__(self, jobs: Sequence[_ShardJob], sampling_rate: int, segment_seconds: float, batch_size: int, receptive_field: int):
        self.jobs = list(jobs)
        self.sampling_rate = sampling_rate
        self.segment_seconds = segment_seconds
        self.batch_size = batch_size
        self.receptive_field = receptive_field

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        jobs = self.jobs if info is None else self.jobs[info.id :: info.num_workers]
        for job in jobs:
            yield from self._shard_items(job)

    def _shard_items(self, job: _ShardJob) -> Iterator[dict]:
        pending: list = []
        for position, track in enumerate(job.tracks):
            try:
                for seg in iter_segments(track.audio, self.sampling_rate, self.segment_seconds, min_last_fraction=MIN_LAST_FRACTION):
                    pending.append((position, seg))
                    if len(pending) == self.batch_size:
                        yield self._batch(job.index, pending)
                        pending = []
            except ValueError as err:  # unreadable, missing, empty or non-finite audio: skip, report
                yield {"kind": "failed", "shard": job.index, "track": position, "reason": str(err)}
        if pending:
            yield self._batch(job.index, pending)
        yield {"kind": "shard_end", "shard": job.index}

    def _batch(self, shard: int, pending: list) -> dict:
        n_samples = len(pending[0][1].samples)
        masks = [segment_attention_mask(seg.valid, n_samples, self.receptive_field) for _, seg in pending]
        return {
            "kind": "batch",
            "shard": shard,
            "input_values": torch.from_numpy(np.stack([seg.samples for _, seg in pending])),
            "attention_mask": torch.from_numpy(np.stack(masks)),
            "rows": [(position, seg.index, float(seg.start), float(seg.end)) for position, seg in pending],
        }


def _passthrough(item: dict) -> dict:
    """Items are already batches (module-level so worker processes can pickle it)."""
    return item


# --------------------------------------------------------------------------------- shard assembly
class _ShardBuffer:
    """Pooled features of one shard, gathered until its last batch arrives."""

    def __init__(self, job: _ShardJob):
        self.job = job
        self.rows: list[tuple[int, int, float, float]] = []
        self.chunks: dict[str, list[np.ndarray]] = {p: [] for p in POOLINGS}
        self.failed: dict[int, str] = {}

    def add(self, rows: list, pooled: dict[str, np.ndarray]) -> None:
        self.rows.extend(tuple(r) for r in rows)
        for pooling in POOLINGS:
            self.chunks[pooling].append(pooled[pooling])

    def arrays(self, n_layers: int, hidden: int) -> tuple[list[tuple], dict[str, np.ndarray]]:
        """Rows and features of the tracks that decoded completely, in (track, segment) order.

        A track failing mid-way may already have segments in earlier batches; they are dropped here.
        """
        keep = [i for i, row in enumerate(self.rows) if row[0] not in self.failed]
        keep.sort(key=lambda i: (self.rows[i][0], self.rows[i][1]))
        arrays = {}
        for pooling in POOLINGS:
            stacked = np.concatenate(self.chunks[pooling]) if self.chunks[pooling] else np.zeros((0, n_layers, hidden), np.float16)
            arrays[pooling] = np.ascontiguousarray(stacked[keep], dtype=np.float16)
        return [self.rows[i] for i in keep], arrays


def _write_shard(cache_dir: Path, buffer: _ShardBuffer, fingerprint: dict, n_layers: int, hidden: int,
                 writer: dict) -> None:
    """Write a shard into a temp folder, fsync everything, then rename it into place (atomic publish).

    A failed write (disk full, I/O error) removes the temp folder and raises an OSError that names the shard,
    keeps the errno, and says that complete shards are kept and a rerun resumes."""
    name = shard_name(buffer.job.index)
    tmp = cache_dir / f"{name}.tmp-{os.getpid()}"
    try:
        _write_shard_files(tmp, buffer, fingerprint, n_layers, hidden, writer)
        os.rename(tmp, cache_dir / name)  # fails if the shard exists: shards are never overwritten
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written shard is never visible, and frees its space
        raise write_error(err, f"could not write feature shard {name} in {str(cache_dir)!r}",
                          "shards already complete are kept: fix the cause (e.g. free disk space) and rerun "
                          "the same extract command to resume") from err
    fsync_dir(cache_dir)


def _write_shard_files(tmp: Path, buffer: _ShardBuffer, fingerprint: dict, n_layers: int, hidden: int,
                       writer: dict) -> None:
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    rows, arrays = buffer.arrays(n_layers, hidden)
    tracks = buffer.job.tracks
    for pooling, array in arrays.items():
        write_synced(tmp / f"{pooling}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
    lines = []
    for position, segment, start, end in rows:
        t = tracks[position]
        record = {"track_id": t.track_id, "dataset": t.dataset, "split": t.split, "labels": list(t.labels),
                  "segment": int(segment), "start": start, "end": end}
        lines.append(json.dumps(record) + "\n")
    write_synced(tmp / SHARD_INDEX, lambda f: f.write("".join(lines).encode("utf-8")))
    failed = [{"track_id": tracks[p].track_id, "dataset": tracks[p].dataset, "reason": reason}
              for p, reason in sorted(buffer.failed.items())]
    meta = {"shard": buffer.job.index, "fingerprint": fingerprint, "tracks": [[t.dataset, t.track_id] for t in tracks],
            "n_segments": len(rows), "failed": failed, "written_by": writer}
    payload = json.dumps(meta, indent=1).encode("utf-8")
    write_synced(tmp / SHARD_META, lambda f: f.write(payload))
    fsync_dir(tmp)


def _shard_is_complete(cache_dir: Path, index: int, fingerprint: dict, tracks: Sequence[Track]) -> bool:
    folder = cache_dir / shard_name(index)
    if not folder.is_dir():
        return False
    meta = _read_json(folder / SHARD_META, "shard metadata")
    if meta.get("fingerprint") != fingerprint or meta.get("tracks") != [[t.dataset, t.track_id] for t in tracks]:
        raise ValueError(f"shard {str(folder)!r} was written by a different extraction: delete cache_dir and rerun extract")
    return True


def _clean_temp_dirs(cache_dir: Path, indices: Sequence[int] | None = None) -> None:
    """Remove leftovers of interrupted runs: temp shard folders (only those of `indices`, if given,
    so one process never deletes another's work in progress); with no `indices`, temp json files too."""
    names = None if indices is None else {shard_name(i) for i in indices}
    for entry in cache_dir.glob("shard-*.tmp-*"):
        if names is None or entry.name.split(".tmp-")[0] in names:
            shutil.rmtree(entry, ignore_errors=True)
    if indices is None:
        for entry in cache_dir.glob(".*.json.tmp-*"):
            entry.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- the manifest
def _check_existing_cache(cache_dir: Path, fingerprint: dict) -> dict | None:
    """The existing manifest if it matches this extraction; refuse a different one with the reason."""
    path = cache_dir / MANIFEST
    if not path.exists():
        if any(cache_dir.glob("shard-[0-9]*")):
            raise ValueError(f"cache_dir {str(cache_dir)!r} has shard folders but no {MANIFEST}: use an empty folder")
        return None
    manifest = _read_json(path, "cache manifest")
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache_dir {str(cache_dir)!r} holds a {MANIFEST} that is not a meralign feature cache")
    old = manifest.get("fingerprint", {})
    if old != fingerprint:
        what = {"model": "a different audio tower (config or weights)", "tracks": "a different track set (ids, labels or splits)"}
        reasons = [what[k] for k in ("model", "tracks") if old.get(k) != fingerprint[k]]
        for key, value in fingerprint["settings"].items():
            if old.get("settings", {}).get(key) != value:
                reasons.append(f"{key}={old.get('settings', {}).get(key)!r} (now {value!r})")
        raise ValueError(
            f"cache_dir {str(cache_dir)!r} holds features of another extraction: it was made with "
            f"{'; '.join(reasons)}. Use a new cache_dir, or delete this one to start over."
        )
    return manifest


def _base_manifest(model, plan: list[list[Track]], fingerprint: dict) -> dict:
    config = model.config
    meta = {
        "feature_layers": list(config.feature_layers),
        "hidden_size": int(config.audio_config.hidden_size),
        "sampling_rate": int(config.sampling_rate),
        "segment_seconds": float(config.segment_seconds),
        "poolings": list(POOLINGS),
        "dtype": "float16",
        "mixed_precision": fingerprint["settings"]["mixed_precision"],
        "model_fingerprint": fingerprint["model"],
        "audio_model": getattr(config, "audio_name_or_path", None) or getattr(config, "_name_or_path", None) or None,
        "n_tracks": sum(len(s) for s in plan),
        "datasets": sorted({t.dataset for s in plan for t in s}),
    }
    shards = [{"name": shard_name(i), "tracks": [[t.dataset, t.track_id] for t in s]} for i, s in enumerate(plan)]
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "complete": False, "fingerprint": fingerprint,
            "meta": meta, "shards": shards}


def _final_report(cache_dir: Path, plan: list[list[Track]], skipped: set[int], seconds: float) -> ExtractionReport:
    """The report of the whole cache, read back from the shards every process wrote."""
    failed, n_segments = [], 0
    for i in range(len(plan)):
        folder = cache_dir / shard_name(i)
        if not folder.is_dir():
            raise RuntimeError(f"shard {str(folder)!r} is missing after extraction: a process did not finish its shards")
        meta = _read_json(folder / SHARD_META, "shard metadata")
        failed.extend(meta["failed"])
        n_segments += int(meta["n_segments"])
    return ExtractionReport(
        n_tracks=sum(len(s) for s in plan), n_segments=n_segments, n_failed=len(failed), failed=failed,
        shards_done=len(plan) - len(skipped), shards_skipped=len(skipped), n_shards=len(plan), seconds=round(seconds, 3),
    )


# ------------------------------------------------------------------------------------ extraction
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
        pooled = {p: torch.stack([pool_frames(states[i].float(), frame_mask, p) for i in layers], dim=1) for p in POOLINGS}
    out = {}
    for pooling, tensor in pooled.items():
        tensor = tensor.float().cpu()
        if not torch.isfinite(tensor).all() or tensor.abs().max() > np.finfo(np.float16).max:
            raise RuntimeError(f"{pooling}-pooled features are not finite or overflow float16 (shard {batch['shard']})")
        out[pooling] = tensor.to(torch.float16).numpy()
    return out


def _run_shards(model, jobs: list[_ShardJob], cache_dir: Path, fingerprint: dict, accelerator, *, batch_size: int,
                num_workers: int, progress: bool) -> None:
    """Decode (DataLoader workers) and run the tower over this process's shards, writing each when done."""
    config = model.config
    layers, hidden = list(config.feature_layers), int(config.audio_config.hidden_size)
    device = accelerator.device
    stream = SegmentStream(jobs, int(config.sampling_rate), float(config.segment_seconds), batch_size,
                           receptive_field(config.audio_config))
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=_passthrough,
                        pin_memory=device.type == "cuda")
    buffers = {job.index: _ShardBuffer(job) for job in jobs}
    writer = {"process_index": accelerator.process_index, "num_processes": accelerator.num_processes}
    sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
    from tqdm.auto import tqdm

    bar = tqdm(unit="seg", desc="extract", disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    try:
        for item in loader:
            buffer = buffers[item["shard"]]
            if item["kind"] == "batch":
                buffer.add(item["rows"], _pool_batch(model, item, device, accelerator, layers))
                bar.update(len(item["rows"]))
                if sleep > 0:
                    time.sleep(sleep)
            elif item["kind"] == "failed":
                track = buffer.job.tracks[item["track"]]
                buffer.failed[item["track"]] = item["reason"]
                warnings.warn(f"skipping track {track.track_id!r} of dataset {track.dataset!r}: {item['reason']}",
                              ExtractionWarning, stacklevel=3)
            else:  # shard_end
                _write_shard(cache_dir, buffers.pop(item["shard"]), fingerprint, len(layers), hidden, writer)
                bar.set_postfix(shards=len(jobs) - len(buffers), refresh=False)
    finally:
        bar.close()
    if buffers:
        raise RuntimeError(f"shards {sorted(buffers)} got no end of stream: the decoding workers stopped early")


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
) -> ExtractionReport:
    """Cache pooled features of every segment of `tracks` in `cache_dir` (resumable, distributable).

    Under `accelerate launch`, process p does shards i % num_processes == p and the main process
    writes the manifest once all are done; the cache is the same as a one-process run's. A rerun
    skips complete shards; a rerun with other tracks, model or settings is refused. Tracks whose
    audio cannot be decoded are skipped with an ExtractionWarning and listed in the report.
    `mixed_precision` ("no", "bf16", "fp16") applies on GPU when no `accelerator` is given; the
    model's audio tower is put in eval mode and moved to the accelerator's device.
    """
    start_time = time.perf_counter()
    if not (hasattr(model, "audio_hidden_states") and hasattr(model, "config")):
        raise TypeError(f"model must be a MERAlignModel, got {type(model).__name__}")
    tracks = _check_tracks(tracks)
    _check_positive("batch_size", batch_size)
    _check_positive("num_workers", num_workers, minimum=0)
    check_vocabularies(tracks, vocabularies)
    plan = plan_shards(tracks, tracks_per_shard)
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ValueError(f"cache_dir {str(cache_dir)!r} exists and is not a folder")

    accelerator = _resolve_accelerator(accelerator, mixed_precision)
    check_launch(accelerator)
    fingerprint = _fingerprint(model, plan, _effective_precision(accelerator), tracks_per_shard)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Every process checks before any barrier, so a refusal stops them all instead of hanging the others.
    existing = _check_existing_cache(cache_dir, fingerprint)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    mine = [i for i in range(len(plan)) if i % n_proc == rank]
    _clean_temp_dirs(cache_dir, mine)
    skipped = {i for i in range(len(plan)) if _shard_is_complete(cache_dir, i, fingerprint, plan[i])}
    if accelerator.is_main_process and existing is None:
        try:
            atomic_write_json(cache_dir / MANIFEST, _base_manifest(model, plan, fingerprint))
        except OSError as err:
            raise write_error(err, f"could not start the feature cache in {str(cache_dir)!r}",
                              "nothing was computed: fix the cause (e.g. free disk space) and rerun") from err
    accelerator.wait_for_everyone()

    jobs = [_ShardJob(i, tuple(plan[i])) for i in mine if i not in skipped]
    was_training = model.audio_model.training
    model.audio_model.eval().to(accelerator.device)
    try:
        if jobs:
            _run_shards(model, jobs, cache_dir, fingerprint, accelerator, batch_size=batch_size,
                        num_workers=num_workers, progress=progress)
    finally:
        model.audio_model.train(was_training)
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        _clean_temp_dirs(cache_dir)
        report = _final_report(cache_dir, plan, skipped, time.perf_counter() - start_time)
        manifest = _base_manifest(model, plan, fingerprint)
        manifest.update(complete=True, n_segments=report.n_segments, failed=report.failed, report=report.to_dict())
        try:
            atomic_write_json(cache_dir / REPORT, report.to_dict())
            atomic_write_json(cache_dir / MANIFEST, manifest)  # the cache becomes loadable only here
        except OSError as err:
            raise write_error(err, f"could not finish the feature cache {str(cache_dir)!r}",
                              "every shard is complete and kept: fix the cause (e.g. free disk space) and rerun "
                              "the same extract command to finish it (nothing is recomputed)") from err
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        report = ExtractionReport(**_read_json(cache_dir / REPORT, "extraction report"))
    return report


# ---------------------------------------------------------------------------------- reading back
class FeatureCache:
    """A complete feature cache: `.meta`, `.index` (one dict per segment, shard order), `.features()`.

    Shards are opened memory-mapped; `features(pooling)` concatenates them into one array.
    """

    def __init__(self, cache_dir: Path, manifest: dict, index: list[dict], shard_arrays: list[dict[str, np.ndarray]]):
        self.cache_dir = cache_dir
        self.manifest = manifest
        self.meta = dict(manifest["meta"])
        self.index = index
        self.failed: list[dict] = list(manifest.get("failed", []))
        self._shard_arrays = shard_arrays

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.cache_dir)!r}, segments={len(self)}, layers={self.meta['feature_layers']})"

    def shard_features(self, pooling: str = "mean") -> list[np.ndarray]:
        """The per-shard memory-mapped arrays (nothing is read until used)."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        return [arrays[pooling] for arrays in self._shard_arrays]

    def features(self, pooling: str = "mean") -> np.ndarray:
        """All segments' features, float16 [N, n_layers, hidden], rows in `index` order."""
        parts = self.shard_features(pooling)
        shape = (0, len(self.meta["feature_layers"]), int(self.meta["hidden_size"]))
        return np.concatenate(parts) if parts else np.zeros(shape, np.float16)

    def select(self, datasets: Sequence[str] | str | None = None, splits: Sequence[str] | str | None = None) -> np.ndarray:
        """Row indices (int64) of segments whose dataset and split are among those given (None: any)."""
        datasets = _as_name_set(datasets, "datasets")
        splits = _as_name_set(splits, "splits")
        rows = [i for i, r in enumerate(self.index)
                if (datasets is None or r["dataset"] in datasets) and (splits is None or r["split"] in splits)]
        return np.asarray(rows, dtype=np.int64)


def _as_name_set(values, argument: str) -> set[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return {values}
    if not hasattr(values, "__iter__") or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{argument} must be a string, a list of strings or None, got {values!r}")
    return set(values)


def load_cache(cache_dir: str | os.PathLike) -> FeatureCache:
    """Open a complete cache written by `extract_features`; refuse a missing or unfinished one."""
    cache_dir = Path(cache_dir)
    rerun = "rerun `python train.py extract` with the same arguments to finish it"
    path = cache_dir / MANIFEST
    if not path.is_file():
        raise ValueError(
            f"cache_dir {str(cache_dir)!r} is not a feature cache ({MANIFEST} is missing): run `python train.py extract` first"
        )
    manifest = _read_json(path, "cache manifest")
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache_dir {str(cache_dir)!r} holds a {MANIFEST} that is not a meralign feature cache")
    if manifest.get("version") != CACHE_VERSION:
        raise ValueError(
            f"cache_dir {str(cache_dir)!r} has cache version {manifest.get('version')!r}, expected {CACHE_VERSION}: re-extract"
        )
    if not manifest.get("complete"):
        raise ValueError(f"the feature cache {str(cache_dir)!r} is incomplete (an extraction was interrupted): {rerun}")
    n_layers, hidden = len(manifest["meta"]["feature_layers"]), int(manifest["meta"]["hidden_size"])
    index, arrays = [], []
    for shard in manifest["shards"]:
        folder = cache_dir / shard["name"]
        if not (folder / SHARD_META).is_file():
            raise ValueError(f"the feature cache {str(cache_dir)!r} lacks shard {shard['name']}: {rerun}")
        meta = _read_json(folder / SHARD_META, "shard metadata")
        if meta.get("fingerprint") != manifest["fingerprint"]:
            raise ValueError(f"shard {str(folder)!r} belongs to another extraction: delete cache_dir and re-extract")
        rows = [json.loads(line) for line in (folder / SHARD_INDEX).read_text(encoding="utf-8").splitlines() if line]
        shard_arrays = {}
        for pooling in manifest["meta"]["poolings"]:
            try:
                array = np.load(folder / f"{pooling}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"shard {str(folder)!r}: {pooling}.npy is unreadable ({err}): {rerun} in a fresh cache_dir"
                ) from None
            if array.shape != (len(rows), n_layers, hidden) or array.dtype != np.float16 or len(rows) != meta["n_segments"]:
                raise ValueError(f"shard {str(folder)!r}: {pooling}.npy has shape {array.shape} {array.dtype}, expected "
                                 f"({len(rows)}, {n_layers}, {hidden}) float16: the shard is damaged, re-extract")
            shard_arrays[pooling] = array
        index.extend(rows)
        arrays.append(shard_arrays)
    return FeatureCache(cache_dir, manifest, index, arrays)


# ------------------------------------------------------------------------------------------- CLI
@dataclass
class ExtractArguments:
    """`python train.py extract`: cache MERT features of datasets listed in manifests."""

    cache_dir: str = field(metadata={"help": "Folder of the feature cache (created; a rerun resumes it)."})
    manifests: list[str] = field(default_factory=list, metadata={"help": "CSV/JSONL dataset manifests (path, labels[, track_id][, split]); "
                                                   "each manifest's file stem becomes its dataset name."})
    datasets: list[str] = field(default_factory=list, metadata={
        "help": "Datasets in their native layout, as kind:key=value,key=value with the adapter's arguments, e.g. "
                "'mtg-jamendo:root=DATA/mtg-jamendo/data,audio_dir=DATA/mtg-audio' "
                "'cal500:annotations_dir=DATA/cal500/annotations,audio_dir=DATA/cal500/mp3' "
                "'emotify:data_csv=DATA/emotify/data.csv,audio_dir=DATA/emotify'. Their built-in vocabularies apply."})
    vocabularies: list[str] = field(default_factory=list, metadata={
        "help": "Label vocabulary per manifest (a built-in name: mtg-jamendo, cal500, emotify; or a .json/.txt file). "
                "Give one for all manifests or one per manifest."})
    model: str | None = field(default=None, metadata={
        "help": "A saved MERAlign model folder, or 'tiny' for a randomly initialised tiny tower (offline tests and demos)."})
    mert: str | None = field(default=None, metadata={"help": "A MERT-v1 checkpoint (folder or Hub id), used instead of --model."})
    text: str | None = field(default=None, metadata={
        "help": "The sentence-transformer to pair with --mert (default: the packaged all-MiniLM-L6-v2)."})
    feature_layers: list[int] | None = field(default=None, metadata={
        "help": "Hidden-state indices to cache, with --mert (default: the config's, 3 6 9 12)."})
    segment_seconds: float | None = field(default=None, metadata={"help": "Override the model's segment length in seconds."})
    seed: int = field(default=0, metadata={"help": "Seed of the per-track split for manifests that give no split."})
    batch_size: int = field(default=8, metadata={"help": "Segments per forward pass."})
    tracks_per_shard: int = field(default=16, metadata={"help": "Whole tracks per shard (the unit of resumption and distribution)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding audio alongside the model."})
    mixed_precision: str = field(default="bf16", metadata={
        "help": "Autocast on GPU: 'no', 'bf16' or 'fp16' (CPU runs in float32).", "choices": list(MIXED_PRECISIONS)})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (main process only)."})


def parse_extract_arguments(argv: Sequence[str]) -> ExtractArguments:
    """Flags, or a single .yaml/.json config file holding the same fields."""
    (args,) = parse_args(ExtractArguments, list(argv))
    return args


def build_model(args: ExtractArguments):
    """The model named by --model / --mert (+ --text), with the CLI's overrides applied."""
    from modeling_meralign import MERAlignModel

    if (args.model is None) == (args.mert is None):
        raise ValueError("give exactly one of --model (a saved MERAlign folder, or 'tiny') and --mert (a MERT checkpoint)")
    if args.feature_layers is not None and args.mert is None:
        raise ValueError("--feature_layers applies only with --mert: a saved model keeps its own layers")
    if args.model == "tiny":
        from meralign.tiny import build_tiny_model

        print("model: 'tiny' is a RANDOMLY INITIALISED tiny MERT-shaped tower; its features are for tests and demos only")
        model = build_tiny_model(text_name_or_path=args.text)
    elif args.model is not None:
        if not Path(args.model).is_dir():
            raise ValueError(f"--model must be a saved MERAlign model folder or 'tiny', got {args.model!r}")
        model = MERAlignModel.from_pretrained(args.model)
    else:
        from meralign.utils import default_text_model_path

        kwargs = {} if args.feature_layers is None else {"feature_layers": list(args.feature_layers)}
        model = MERAlignModel.from_towers(args.mert, args.text or default_text_model_path(), **kwargs)
    if args.segment_seconds is not None:
        if not (math.isfinite(args.segment_seconds) and args.segment_seconds > 0):
            raise ValueError(f"--segment_seconds must be a positive number, got {args.segment_seconds!r}")
        model.config.segment_seconds = float(args.segment_seconds)
    return model.eval()


def load_tracks(args: ExtractArguments) -> tuple[list[Track], dict[str, Vocabulary]]:
    """Tracks of every manifest and each dataset's vocabulary."""
    from meralign.data.adapters import load_manifest
    from meralign.vocabularies import load_vocabulary

    if not args.manifests and not args.datasets:
        raise ValueError("give at least one dataset: --manifests (CSV/JSONL) or --datasets (native layouts)")
    vocab_specs = list(args.vocabularies)
    if len(vocab_specs) == 1:
        vocab_specs = vocab_specs * len(args.manifests)
    if len(vocab_specs) != len(args.manifests):
        raise ValueError(f"--vocabularies must give one vocabulary for all manifests or one per manifest "
                         f"({len(args.manifests)}), got {len(args.vocabularies)}")
    tracks, vocabularies = [], {}
    for manifest, spec in zip(args.manifests, vocab_specs):
        vocab = load_vocabulary(spec)
        loaded = load_manifest(manifest, vocab, seed=args.seed)
        for track in loaded:
            vocabularies[track.dataset] = vocab
        tracks.extend(loaded)
    for spec in args.datasets:
        loaded = load_native_dataset(spec, seed=args.seed)
        for track in loaded:
            vocabularies[track.dataset] = load_vocabulary(track.dataset)
        tracks.extend(loaded)
    return tracks, vocabularies


def load_native_dataset(spec: str, seed: int = 0) -> list[Track]:
    """Tracks of `kind:key=value,...` through the dataset adapter registered under `kind`."""
    from meralign.data.adapters import ADAPTERS, load_dataset_tracks

    kind, _, options = spec.partition(":")
    if kind not in ADAPTERS or kind in ("manifest", "hf"):
        raise ValueError(f"--datasets entry {spec!r}: kind must be one of mtg-jamendo, cal500, emotify")
    kwargs = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--datasets entry {spec!r}: options must look like key=value, got {item!r}")
        value = value.strip()
        kwargs[key.strip()] = int(value) if value.isdigit() else {"true": True, "false": False}.get(value.lower(), value)
    kwargs.setdefault("seed", seed)
    return load_dataset_tracks(kind, **kwargs)


def extract_main(argv: Sequence[str]) -> int:
    """`python train.py extract ...` (or `accelerate launch train.py extract ...`)."""
    args = parse_extract_arguments(argv)
    tracks, vocabularies = load_tracks(args)
    model = build_model(args)
    report = extract_features(
        model, tracks, args.cache_dir, batch_size=args.batch_size, tracks_per_shard=args.tracks_per_shard,
        num_workers=args.num_workers, mixed_precision=args.mixed_precision, vocabularies=vocabularies,
        progress=args.progress,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"feature cache: {args.cache_dir}")
        print(json.dumps(report.to_dict(), indent=1))
        if report.n_failed:
            print(f"{report.n_failed} track(s) could not be decoded and were skipped (listed above)", file=sys.stderr)
    return 0
