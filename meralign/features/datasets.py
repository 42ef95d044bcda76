"""Per-dataset arrays of a feature cache, built once: what training and evaluation read.

`CacheDatasets(cache)` wraps a loaded cache (a `FeatureCache`, or anything with its `.index`, `.meta`,
`.features()` and `.select()`); `get(name, vocabulary, pooling)` builds a dataset's features and multi-hot
labels the first time and returns the same arrays afterwards, so a protocol that trains and scores many
heads reads each dataset from the cache once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from meralign.vocabularies import Vocabulary, resolve_datasets


@dataclass
class DatasetArrays:
    """One dataset of the cache, as arrays: features [n, layers, hidden], multi-hot labels [n, V]."""

    name: str
    vocabulary: Vocabulary
    features: torch.Tensor
    labels: torch.Tensor
    track_ids: list[str]
    splits: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split ("all": every row)."""
        return np.arange(len(self.splits)) if split == "all" else np.flatnonzero(self.splits == split)

    def label_frequencies(self, split: str = "train") -> np.ndarray:
        """How often each label occurs among the split's segments (the frequency-prior baseline)."""
        return self.labels[self.rows(split)].float().mean(dim=0).numpy()


class CacheDatasets:
    """The datasets of one feature cache, each built once (see the module docstring)."""

    def __init__(self, cache):
        if isinstance(cache, (str, os.PathLike)):
            from meralign.features.cache import load_cache

            cache = load_cache(cache)
        self.cache = cache
        self.meta = cache.meta
        self._built: dict[tuple[str, str, str], DatasetArrays] = {}

    @classmethod
    def of(cls, source) -> CacheDatasets:
        """`source` itself when it is a CacheDatasets, else a CacheDatasets over it (a cache or its folder)."""
        return source if isinstance(source, cls) else cls(source)

    def names(self) -> list[str]:
        """Names of the datasets the cache holds, sorted."""
        return sorted({entry["dataset"] for entry in self.cache.index})

    def vocabularies(self, names: list[str], overrides: list[str] = ()) -> dict[str, Vocabulary]:
        """Each dataset's vocabulary (`dataset=source` overrides, else the name; last resort: the cache's labels)."""
        return resolve_datasets(names, overrides, self.cache)

    def get(self, name: str, vocabulary: Vocabulary, pooling: str) -> DatasetArrays:
        key = (name, vocabulary.name, pooling)
        if key not in self._built:
            self._built[key] = self._build(name, vocabulary, pooling)
        return self._built[key]

    def _build(self, name: str, vocabulary: Vocabulary, pooling: str) -> DatasetArrays:
        rows = self.cache.select(datasets=[name])
        if not len(rows):
            raise ValueError(f"dataset {name!r} has no segments in the cache (it holds: {self.names()})")
        index = [self.cache.index[i] for i in rows]
        labels = torch.zeros(len(rows), len(vocabulary), dtype=torch.bool)
        for r, entry in enumerate(index):
            for label in entry["labels"]:
                labels[r, vocabulary.index(label)] = True
        features = torch.from_numpy(np.ascontiguousarray(self.cache.features(pooling)[rows]))
        splits = np.array([e["split"] for e in index])
        return DatasetArrays(name, vocabulary, features, labels, [e["track_id"] for e in index], splits)
