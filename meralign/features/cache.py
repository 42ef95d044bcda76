"""Reading a complete feature cache: memory-mapped shards, the segment index, and per-dataset arrays.

`FeatureCache.dataset(name, vocabulary, pooling)` is the access layer training and evaluation share: each
dataset's arrays are built once and kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meralign.features.layout import (
    CACHE_FORMAT,
    CACHE_VERSION,
    CACHED_POOLINGS,
    MANIFEST,
    SHARD_INDEX,
    SHARD_META,
    read_json,
)


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
        if pooling not in CACHED_POOLINGS:
            raise ValueError(f"pooling must be one of {CACHED_POOLINGS}, got {pooling!r}")
        return [arrays[pooling] for arrays in self._shard_arrays]

    def features(self, pooling: str = "mean") -> np.ndarray:
        """All segments' features, float16 [N, n_layers, hidden], rows in `index` order."""
        parts = self.shard_features(pooling)
        shape = (0, len(self.meta["feature_layers"]), int(self.meta["hidden_size"]))
        return np.concatenate(parts) if parts else np.zeros(shape, np.float16)

    def select(
        self, datasets: Sequence[str] | str | None = None, splits: Sequence[str] | str | None = None
    ) -> np.ndarray:
        """Row indices (int64) of segments whose dataset and split are among those given (None: any)."""
        datasets = _as_name_set(datasets, "datasets")
        splits = _as_name_set(splits, "splits")
        rows = [
            i
            for i, r in enumerate(self.index)
            if (datasets is None or r["dataset"] in datasets) and (splits is None or r["split"] in splits)
        ]
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
            f"cache_dir {str(cache_dir)!r} is not a feature cache ({MANIFEST} is missing): run `python train.py "
            "extract` first"
        )
    manifest = read_json(path, "cache manifest")
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache_dir {str(cache_dir)!r} holds a {MANIFEST} that is not a meralign feature cache")
    if manifest.get("version") != CACHE_VERSION:
        raise ValueError(
            f"cache_dir {str(cache_dir)!r} has cache version {manifest.get('version')!r}, expected {CACHE_VERSION}: "
            "re-extract"
        )
    if not manifest.get("complete"):
        raise ValueError(
            f"the feature cache {str(cache_dir)!r} is incomplete (an extraction was interrupted): {rerun}"
        )
    n_layers, hidden = len(manifest["meta"]["feature_layers"]), int(manifest["meta"]["hidden_size"])
    index, arrays = [], []
    for shard in manifest["shards"]:
        folder = cache_dir / shard["name"]
        if not (folder / SHARD_META).is_file():
            raise ValueError(f"the feature cache {str(cache_dir)!r} lacks shard {shard['name']}: {rerun}")
        meta = read_json(folder / SHARD_META, "shard metadata")
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
            if (
                array.shape != (len(rows), n_layers, hidden)
                or array.dtype != np.float16
                or len(rows) != meta["n_segments"]
            ):
                raise ValueError(
                    f"shard {str(folder)!r}: {pooling}.npy has shape {array.shape} {array.dtype}, expected "
                    f"({len(rows)}, {n_layers}, {hidden}) float16: the shard is damaged, re-extract"
                )
            shard_arrays[pooling] = array
        index.extend(rows)
        arrays.append(shard_arrays)
    return FeatureCache(cache_dir, manifest, index, arrays)
