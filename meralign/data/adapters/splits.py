"""Splits by track: the one seeded splitter every adapter (and the synthetic corpus) shares.

Splits are assigned per TRACK, never per segment: a song's segments can never straddle train and test (the
reference code's defect).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if isinstance(fractions, (str, bytes)) or not hasattr(fractions, "__iter__"):
        raise TypeError(f"fractions must be three numbers (train, validation, test), got {fractions!r}")
    values = tuple(fractions)
    if len(values) != 3:
        raise ValueError(f"fractions must be three numbers (train, validation, test), got {len(values)}: {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"fractions must be numbers, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"fractions must be finite and >= 0, got {values!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {values!r} (sum {sum(values)})")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    return seed


def split_counts(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """Exact (train, validation, test) counts for ``n`` tracks.

    Cumulative fractions are rounded half-up, so the counts always sum to ``n`` and each split
    is within one track of its exact share (10 tracks at 0.7/0.1/0.2 -> 7/1/2).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fr = _check_fractions(fractions)
    cut1 = min(n, math.floor(n * fr[0] + 0.5))
    cut2 = min(n, max(cut1, math.floor(n * (fr[0] + fr[1]) + 0.5)))
    return cut1, cut2 - cut1, n - cut2


def _split_key(seed: int, track_id: str) -> bytes:
    # A hash per (seed, id) instead of a shuffled list: the order is the same on every Python
    # and numpy version, and adding or removing a few tracks moves only a few others.
    return hashlib.sha256(f"{seed}\x00{track_id}".encode()).digest()


def split_by_track(
    track_ids: Iterable[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Assign each distinct track id to "train", "validation" or "test".

    Deterministic for a seed and independent of the input order (ids are de-duplicated and
    sorted first); the counts are exact (see ``split_counts``). Splitting by track id, never by
    segment, is what keeps a song's segments out of two splits.
    """
    seed = _check_seed(seed)
    if isinstance(track_ids, (str, bytes)) or not hasattr(track_ids, "__iter__"):
        raise TypeError(f"track_ids must be an iterable of strings, got {type(track_ids).__name__}")
    ids = sorted(set(track_ids), key=lambda t: (not isinstance(t, str), str(t)))
    for track_id in ids:
        if not isinstance(track_id, str) or not track_id:
            raise TypeError(f"track_ids must contain non-empty strings, got {track_id!r}")
    n_train, n_val, _ = split_counts(len(ids), fractions)
    ranked = sorted(ids, key=lambda t: (_split_key(seed, t), t))
    out: dict[str, str] = {}
    for rank, track_id in enumerate(ranked):
        out[track_id] = "train" if rank < n_train else "validation" if rank < n_train + n_val else "test"
    return {track_id: out[track_id] for track_id in ids}  # in id order, for readable diffs
