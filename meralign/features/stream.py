"""Decoding for extraction: tracks into fixed-length segments, batched within a shard, in DataLoader workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from audio_meralign import iter_segments
from meralign.data.tracks import Track
from meralign.features.layout import MIN_LAST_FRACTION


def segment_attention_mask(valid: int, n_samples: int, receptive_field: int) -> np.ndarray:
    """Ones over the first max(valid, receptive_field) samples: padding stays out of mean pooling,
    yet even a very short last piece yields at least one frame."""
    mask = np.zeros(n_samples, dtype=np.int64)
    mask[: min(n_samples, max(valid, receptive_field))] = 1
    return mask


# -------------------------------------------------------------------------------- decoding stream
@dataclass(frozen=True)
class ShardJob:
    index: int
    tracks: tuple[Track, ...]


class SegmentStream(IterableDataset):
    """Decodes the tracks of a process's shards into batches, in DataLoader workers.

    Each worker takes whole shards (worker k: shards k, k + n, ...) and batches segments within a
    shard only, so batch composition, and hence every float, depends on the shard alone. Items:
    ``{"kind": "batch", ...}`` (stacked segments, masks, and per-row (track, segment, start, end)),
    ``{"kind": "failed", "track": position, "reason": ...}``, and ``{"kind": "shard_end"}``.
    """

    def __init__(
        self,
        jobs: Sequence[ShardJob],
        sampling_rate: int,
        segment_seconds: float,
        batch_size: int,
        receptive_field: int,
    ):
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

    def _shard_items(self, job: ShardJob) -> Iterator[dict]:
        pending: list = []
        for position, track in enumerate(job.tracks):
            try:
                for seg in iter_segments(
                    track.audio, self.sampling_rate, self.segment_seconds, min_last_fraction=MIN_LAST_FRACTION
                ):
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


def passthrough(item: dict) -> dict:
    """Items are already batches (module-level so worker processes can pickle it)."""
    return item
