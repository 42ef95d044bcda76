"""Shards on disk: gathering a shard's features, publishing it atomically, and the cache manifest and report."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from meralign.data.tracks import Track
from meralign.features.layout import (
    CACHE_FORMAT,
    CACHE_VERSION,
    CACHED_POOLINGS,
    MANIFEST,
    SHARD_INDEX,
    SHARD_META,
    read_json,
    shard_name,
)
from meralign.features.stream import ShardJob
from meralign.files import fsync_dir, write_error, write_synced


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


class ShardBuffer:
    """Pooled features of one shard, gathered until its last batch arrives."""

    def __init__(self, job: ShardJob):
        self.job = job
        self.rows: list[tuple[int, int, float, float]] = []
        self.chunks: dict[str, list[np.ndarray]] = {p: [] for p in CACHED_POOLINGS}
        self.failed: dict[int, str] = {}

    def add(self, rows: list, pooled: dict[str, np.ndarray]) -> None:
        self.rows.extend(tuple(r) for r in rows)
        for pooling in CACHED_POOLINGS:
            self.chunks[pooling].append(pooled[pooling])

    def arrays(self, n_layers: int, hidden: int) -> tuple[list[tuple], dict[str, np.ndarray]]:
        """Rows and features of the tracks that decoded completely, in (track, segment) order.

        A track failing mid-way may already have segments in earlier batches; they are dropped here.
        """
        keep = [i for i, row in enumerate(self.rows) if row[0] not in self.failed]
        keep.sort(key=lambda i: (self.rows[i][0], self.rows[i][1]))
        arrays = {}
        for pooling in CACHED_POOLINGS:
            stacked = (
                np.concatenate(self.chunks[pooling])
                if self.chunks[pooling]
                else np.zeros((0, n_layers, hidden), np.float16)
            )
            arrays[pooling] = np.ascontiguousarray(stacked[keep], dtype=np.float16)
        return [self.rows[i] for i in keep], arrays


def write_shard(
    cache_dir: Path, buffer: ShardBuffer, fingerprint: dict, n_layers: int, hidden: int, writer: dict
) -> None:
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
        raise write_error(
            err,
            f"could not write feature shard {name} in {str(cache_dir)!r}",
            "shards already complete are kept: fix the cause (e.g. free disk space) and rerun "
            "the same extract command to resume",
        ) from err
    fsync_dir(cache_dir)


def _write_shard_files(
    tmp: Path, buffer: ShardBuffer, fingerprint: dict, n_layers: int, hidden: int, writer: dict
) -> None:
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
        record = {
            "track_id": t.track_id,
            "dataset": t.dataset,
            "split": t.split,
            "labels": list(t.labels),
            "segment": int(segment),
            "start": start,
            "end": end,
        }
        lines.append(json.dumps(record) + "\n")
    write_synced(tmp / SHARD_INDEX, lambda f: f.write("".join(lines).encode("utf-8")))
    failed = [
        {"track_id": tracks[p].track_id, "dataset": tracks[p].dataset, "reason": reason}
        for p, reason in sorted(buffer.failed.items())
    ]
    meta = {
        "shard": buffer.job.index,
        "fingerprint": fingerprint,
        "tracks": [[t.dataset, t.track_id] for t in tracks],
        "n_segments": len(rows),
        "failed": failed,
        "written_by": writer,
    }
    payload = json.dumps(meta, indent=1).encode("utf-8")
    write_synced(tmp / SHARD_META, lambda f: f.write(payload))
    fsync_dir(tmp)


def shard_is_complete(cache_dir: Path, index: int, fingerprint: dict, tracks: Sequence[Track]) -> bool:
    folder = cache_dir / shard_name(index)
    if not folder.is_dir():
        return False
    meta = read_json(folder / SHARD_META, "shard metadata")
    if meta.get("fingerprint") != fingerprint or meta.get("tracks") != [[t.dataset, t.track_id] for t in tracks]:
        raise ValueError(
            f"shard {str(folder)!r} was written by a different extraction: delete cache_dir and rerun extract"
        )
    return True


def clean_temp_dirs(cache_dir: Path, indices: Sequence[int] | None = None) -> None:
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
def check_existing_cache(cache_dir: Path, fingerprint: dict) -> dict | None:
    """The existing manifest if it matches this extraction; refuse a different one with the reason."""
    path = cache_dir / MANIFEST
    if not path.exists():
        if any(cache_dir.glob("shard-[0-9]*")):
            raise ValueError(f"cache_dir {str(cache_dir)!r} has shard folders but no {MANIFEST}: use an empty folder")
        return None
    manifest = read_json(path, "cache manifest")
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache_dir {str(cache_dir)!r} holds a {MANIFEST} that is not a meralign feature cache")
    old = manifest.get("fingerprint", {})
    if old != fingerprint:
        what = {
            "model": "a different audio tower (config or weights)",
            "tracks": "a different track set (ids, labels or splits)",
        }
        reasons = [what[k] for k in ("model", "tracks") if old.get(k) != fingerprint[k]]
        for key, value in fingerprint["settings"].items():
            if old.get("settings", {}).get(key) != value:
                reasons.append(f"{key}={old.get('settings', {}).get(key)!r} (now {value!r})")
        raise ValueError(
            f"cache_dir {str(cache_dir)!r} holds features of another extraction: it was made with "
            f"{'; '.join(reasons)}. Use a new cache_dir, or delete this one to start over."
        )
    return manifest


def base_manifest(model, plan: list[list[Track]], fingerprint: dict) -> dict:
    config = model.config
    meta = {
        "feature_layers": list(config.feature_layers),
        "hidden_size": int(config.audio_config.hidden_size),
        "sampling_rate": int(config.sampling_rate),
        "segment_seconds": float(config.segment_seconds),
        "poolings": list(CACHED_POOLINGS),
        "dtype": "float16",
        "mixed_precision": fingerprint["settings"]["mixed_precision"],
        "model_fingerprint": fingerprint["model"],
        "audio_model": getattr(config, "audio_name_or_path", None) or getattr(config, "_name_or_path", None) or None,
        "n_tracks": sum(len(s) for s in plan),
        "datasets": sorted({t.dataset for s in plan for t in s}),
    }
    shards = [{"name": shard_name(i), "tracks": [[t.dataset, t.track_id] for t in s]} for i, s in enumerate(plan)]
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "complete": False,
        "fingerprint": fingerprint,
        "meta": meta,
        "shards": shards,
    }


def final_report(cache_dir: Path, plan: list[list[Track]], skipped: set[int], seconds: float) -> ExtractionReport:
    """The report of the whole cache, read back from the shards every process wrote."""
    failed, n_segments = [], 0
    for i in range(len(plan)):
        folder = cache_dir / shard_name(i)
        if not folder.is_dir():
            raise RuntimeError(
                f"shard {str(folder)!r} is missing after extraction: a process did not finish its shards"
            )
        meta = read_json(folder / SHARD_META, "shard metadata")
        failed.extend(meta["failed"])
        n_segments += int(meta["n_segments"])
    return ExtractionReport(
        n_tracks=sum(len(s) for s in plan),
        n_segments=n_segments,
        n_failed=len(failed),
        failed=failed,
        shards_done=len(plan) - len(skipped),
        shards_skipped=len(skipped),
        n_shards=len(plan),
        seconds=round(seconds, 3),
    )
