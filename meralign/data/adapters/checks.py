"""Checks every adapter applies to what it reads: labels inside the vocabulary, existing paths, unique ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from meralign.data.tracks import Track
from meralign.vocabularies import Vocabulary


def checked_labels(track_id: str, labels: Iterable[str], vocabulary: Vocabulary, source: str) -> tuple[str, ...]:
    """Labels de-duplicated in order; any label outside the vocabulary is an error naming the track."""
    out: list[str] = []
    for label in labels:
        if not isinstance(label, str):
            raise TypeError(f"{source}: track {track_id!r} has a label that is not a string: {label!r}")
        if label not in vocabulary.labels:
            raise ValueError(
                f"{source}: track {track_id!r} has label {label!r}, which is not in "
                f"vocabulary {vocabulary.name!r} ({len(vocabulary)} labels)"
            )
        if label not in out:
            out.append(label)
    if not out:
        raise ValueError(f"{source}: track {track_id!r} has no labels")
    return tuple(out)


def existing_dir(value: str | Path, argument: str) -> Path:
    path = path_argument(value, argument)
    if not path.is_dir():
        raise ValueError(f"{argument} must be an existing folder, got {str(path)!r}")
    return path


def existing_file(value: str | Path, argument: str) -> Path:
    path = path_argument(value, argument)
    if not path.is_file():
        raise ValueError(f"{argument} must be an existing file, got {str(path)!r}")
    return path


def path_argument(value: Any, argument: str) -> Path:
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{argument} must be a path (str or Path), got {type(value).__name__}")
    return Path(value)


def check_ext(value: Any, argument: str) -> None:
    if not isinstance(value, str) or not value.startswith(".") or len(value) < 2:
        raise ValueError(f"{argument} must be a file extension starting with '.', e.g. '.mp3', got {value!r}")


def check_top_n(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"top_n must be an int >= 1, got {value!r}")


def check_audio_file(track_id: str, path: Path, source: str) -> None:
    if not path.is_file():
        raise ValueError(f"{source}: audio of track {track_id!r} not found at {str(path)!r}")


def build_tracks(
    rows: list[tuple[str, Any, tuple[str, ...], dict]], dataset: str, splits: Mapping[str, str]
) -> list[Track]:
    return [
        Track(track_id=tid, audio=audio, labels=labels, split=splits[tid], dataset=dataset, extra=extra)
        for tid, audio, labels, extra in rows
    ]


def check_unique(ids: Iterable[str], source: str) -> None:
    seen: set[str] = set()
    for track_id in ids:
        if track_id in seen:
            raise ValueError(f"{source}: track id {track_id!r} appears more than once")
        seen.add(track_id)
