"""Dataset adapters: read each emotion dataset in its native, published layout and return Tracks.

Every adapter returns ``list[Track]`` with the ``dataset`` field set and every label checked against the
dataset's vocabulary, so nothing downstream (feature cache, training, evaluation) has to know where a label
came from. Splits are per track (``splits.split_by_track``). One module per source: ``mtg_jamendo``, ``cal500``,
``emotify``, ``manifest`` (CSV/JSONL), ``hf`` (a ``datasets.Dataset``); ``ADAPTERS`` names them for the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meralign.data.adapters.cal500 import load_cal500
from meralign.data.adapters.emotify import load_emotify
from meralign.data.adapters.hf import load_hf_dataset
from meralign.data.adapters.manifest import load_manifest
from meralign.data.adapters.mtg_jamendo import load_mtg_jamendo
from meralign.data.tracks import Track

ADAPTERS: dict[str, Callable[..., list[Track]]] = {
    "mtg-jamendo": load_mtg_jamendo,
    "cal500": load_cal500,
    "emotify": load_emotify,
    "manifest": load_manifest,
    "hf": load_hf_dataset,
}


def load_dataset_tracks(kind: str, **kwargs: Any) -> list[Track]:
    """Run the adapter registered under ``kind`` (see ``ADAPTERS``) with ``kwargs``."""
    if kind not in ADAPTERS:
        raise ValueError(f"kind must be one of {sorted(ADAPTERS)}, got {kind!r}")
    return ADAPTERS[kind](**kwargs)
