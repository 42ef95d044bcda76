"""The record every dataset adapter yields: one track, its audio source, labels and split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Track:
    """One audio track of a dataset.

    ``audio`` is what the decoder accepts: a file path (str), raw ``bytes``, or a dict
    ``{"array": np.ndarray, "sampling_rate": int}``. Splits are assigned per track, so every
    segment of a track lands in the same split.
    """

    track_id: str
    audio: Any
    labels: tuple[str, ...]
    split: str
    dataset: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split of track {self.track_id!r} must be one of {SPLITS}, got {self.split!r}")
