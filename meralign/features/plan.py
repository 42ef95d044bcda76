"""Planning an extraction: checking the tracks, grouping them into shards, and the fingerprint of the numbers.

A shard's content depends only on its tracks, so the same tracks always give the same plan; the fingerprint
records everything the cached numbers depend on, so a rerun with anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from meralign.data.tracks import Track
from meralign.features.layout import CACHED_POOLINGS, MIN_LAST_FRACTION
from meralign.vocabularies import Vocabulary

# Config keys that say nothing about the numbers a tower computes.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "auto_map"}


def check_tracks(tracks: Any) -> list[Track]:
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
        raise TypeError(
            f"vocabularies must be a dict of dataset name -> Vocabulary, got {type(vocabularies).__name__}"
        )
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


def fingerprint(model, plan: list[list[Track]], mixed_precision: str, tracks_per_shard: int) -> dict:
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
            "poolings": list(CACHED_POOLINGS),
        },
        "tracks": _sha([[t.dataset, t.track_id, list(t.labels), t.split] for shard in plan for t in shard]),
    }
