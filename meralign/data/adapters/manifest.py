"""Your own data: a CSV or JSONL manifest of ``path, labels[, track_id][, split]``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meralign.data.adapters.checks import build_tracks, check_audio_file, check_unique, checked_labels, existing_file
from meralign.data.adapters.splits import DEFAULT_FRACTIONS, split_by_track
from meralign.data.tracks import SPLITS, Track
from meralign.vocabularies import resolve


def _manifest_records(path: Path, separator: str) -> list[tuple[str, dict]]:
    """(where, record) pairs; a CSV record's labels are split on ``separator``."""
    records: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
            records.append((f"{path} line {number}", record))
        return records
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip() for name in (reader.fieldnames or [])]
        for name in ("path", "labels"):
            if name not in reader.fieldnames:
                raise ValueError(
                    f"{path}: header must have the columns 'path' and 'labels', got {reader.fieldnames!r}"
                )
        for record in reader:
            where = f"{path} line {reader.line_num}"
            if None in record:
                raise ValueError(f"{where}: malformed row, more fields than the header's {len(reader.fieldnames)}")
            record = {k: (v.strip() if isinstance(v, str) else v) for k, v in record.items()}
            if not any(record.values()):
                continue
            text = record["labels"] or ""
            record["labels"] = [part.strip() for part in text.split(separator) if part.strip()]
            records.append((where, record))
    return records


def load_manifest(
    path: str | Path,
    vocabulary: Any,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    separator: str = ";",
    name: str | None = None,
    check_audio: bool = False,
) -> list[Track]:
    """Tracks from a CSV or JSONL manifest with ``path``, ``labels``, optional ``track_id`` and ``split``.

    ``path`` is relative to the manifest's folder unless absolute. CSV labels are one string
    split on ``separator`` (";" or "|"); JSONL labels are a list. ``track_id`` defaults to the
    audio file's stem. If any record gives a split every record must; otherwise splits are
    seeded by track. ``vocabulary`` is anything ``meralign.vocabularies.resolve`` accepts; ``name`` (default:
    the manifest's stem) becomes each Track's ``dataset``. Other columns go to ``Track.extra``.
    """
    manifest = existing_file(path, "path")
    if manifest.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"path must be a .csv or .jsonl manifest, got {str(manifest)!r}")
    if not isinstance(separator, str) or not separator or separator.isspace() or separator == ",":
        raise ValueError(f"separator must be a non-blank string other than ',' (e.g. ';' or '|'), got {separator!r}")
    vocab = resolve(vocabulary)
    dataset = name or manifest.stem
    records = _manifest_records(manifest, separator)
    if not records:
        raise ValueError(f"{manifest}: the manifest lists no tracks")
    rows, given_splits = [], {}
    for where, record in records:
        audio = record.get("path")
        if not isinstance(audio, str) or not audio:
            raise ValueError(f"{where}: 'path' must be a non-empty string, got {audio!r}")
        audio_path = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
        track_id = record.get("track_id") or Path(audio).stem
        if not isinstance(track_id, str):
            track_id = str(track_id)
        labels = record.get("labels")
        if isinstance(labels, str) or not isinstance(labels, list):
            raise TypeError(f"{where}: 'labels' of track {track_id!r} must be a list of strings, got {labels!r}")
        labels = checked_labels(track_id, labels, vocab, where)
        if record.get("split"):
            if record["split"] not in SPLITS:
                raise ValueError(
                    f"{where}: split of track {track_id!r} must be one of {SPLITS}, got {record['split']!r}"
                )
            given_splits[track_id] = record["split"]
        if check_audio:
            check_audio_file(track_id, audio_path, where)
        extra = {k: v for k, v in record.items() if k not in ("path", "labels", "track_id", "split")}
        rows.append((track_id, str(audio_path), labels, extra))
    check_unique((r[0] for r in rows), str(manifest))
    if given_splits and len(given_splits) != len(rows):
        missing = next(r[0] for r in rows if r[0] not in given_splits)
        raise ValueError(
            f"{manifest}: some records give a split and others do not (track {missing!r} has none); "
            "give every record a split or none"
        )
    splits = given_splits or split_by_track([r[0] for r in rows], seed, fractions)
    return build_tracks(rows, dataset, splits)
