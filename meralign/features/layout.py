"""The feature cache's on-disk layout: file names, format version, and reading its JSON files.

docs/feature-cache.md describes the layout and why it is built this way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from configuration_meralign import POOLINGS

CACHE_FORMAT = "meralign-feature-cache"
CACHE_VERSION = 1
MIN_LAST_FRACTION = 0.5  # a trailing partial segment is kept when at least half a segment long
MANIFEST = "manifest.json"
REPORT = "extraction_report.json"
SHARD_META = "shard.json"
SHARD_INDEX = "index.jsonl"
CACHED_POOLINGS = POOLINGS  # every pooling is cached, so a head can be trained on either


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{what} {str(path)!r} is unreadable ({err}): rerun `python train.py extract` into a fresh cache_dir"
        ) from None


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"
