"""MTG-Jamendo mood/theme: ``autotagging_moodtheme.tsv`` and the official ``splits/split-N`` files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from meralign.data.adapters.checks import check_audio_file, check_unique, checked_labels, existing_dir, existing_file
from meralign.data.adapters.splits import DEFAULT_FRACTIONS, split_by_track
from meralign.data.tracks import SPLITS, Track
from meralign.vocabularies import MTG_JAMENDO

MTG_HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
MTG_TAG_PREFIX = "mood/theme---"
_MTG_TRACK_ID = re.compile(r"track_\d+")


def _parse_mtg_row(fields: list[str], where: str) -> tuple[str, str, str, str, float, list[str]]:
    while fields and not fields[-1].strip():  # a trailing tab is harmless; a missing column is not
        fields = fields[:-1]
    if len(fields) < 6:
        raise ValueError(
            f"{where}: malformed row, expected at least 6 tab-separated fields "
            f"({', '.join(MTG_HEADER)}), got {len(fields)}"
        )
    track_id, artist_id, album_id, rel_path, duration_text = (f.strip() for f in fields[:5])
    if not _MTG_TRACK_ID.fullmatch(track_id):
        raise ValueError(f"{where}: malformed row, TRACK_ID must look like 'track_0000948', got {track_id!r}")
    if not rel_path:
        raise ValueError(f"{where}: malformed row, PATH of track {track_id!r} is empty")
    try:
        duration = float(duration_text)
    except ValueError:
        raise ValueError(
            f"{where}: malformed row, DURATION of track {track_id!r} must be a number, got {duration_text!r}"
        ) from None
    tags = []
    for raw in fields[5:]:
        raw = raw.strip()
        if not raw.startswith(MTG_TAG_PREFIX) or len(raw) == len(MTG_TAG_PREFIX):
            raise ValueError(
                f"{where}: malformed row, tags of track {track_id!r} must look like "
                f"'{MTG_TAG_PREFIX}<tag>', got {raw!r}"
            )
        tags.append(raw[len(MTG_TAG_PREFIX) :])
    return track_id, artist_id, album_id, rel_path, duration, tags


def _read_mtg_tsv(path: Path) -> list[tuple[str, str, str, str, float, list[str]]]:
    """Rows of an MTG-Jamendo autotagging TSV, checked line by line."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file, expected the header {chr(9).join(MTG_HEADER)!r}")
    header = tuple(field.strip() for field in lines[0].split("\t"))
    if header[:6] != MTG_HEADER:
        raise ValueError(f"{path}: header must start with {MTG_HEADER!r}, got {header!r}")
    rows = [
        _parse_mtg_row(line.split("\t"), f"{path} line {number}")
        for number, line in enumerate(lines[1:], start=2)
        if line.strip()
    ]
    check_unique((row[0] for row in rows), str(path))
    return rows


def _mtg_audio_path(rel_path: str, low_quality: bool) -> str:
    # The low-bitrate archive names its files "<id>.low.mp3" under the same folders.
    if low_quality and not rel_path.endswith(".low.mp3"):
        stem, dot, ext = rel_path.rpartition(".")
        rel_path = f"{stem}.low.{ext}" if dot else f"{rel_path}.low"
    return rel_path


def _find_mtg_split_dir(root: Path, split: int) -> Path:
    # The official repository keeps them under data/splits/split-N; accept the folder itself too.
    candidates = [
        root / "splits" / f"split-{split}",
        root / f"split-{split}",
        root / "data" / "splits" / f"split-{split}",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ValueError(
        f"split={split}: no official split folder found; looked for " + ", ".join(repr(str(c)) for c in candidates)
    )


def _find_mtg_tsv(root: Path, subset: str) -> Path:
    candidates = [root / f"{subset}.tsv", root / "data" / f"{subset}.tsv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError("root: annotation file not found; looked for " + ", ".join(repr(str(c)) for c in candidates))


def load_mtg_jamendo(
    root: str | Path,
    split: int | None = 0,
    audio_dir: str | Path | None = None,
    low_quality: bool = False,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    check_audio: bool = False,
    subset: str = "autotagging_moodtheme",
) -> list[Track]:
    """MTG-Jamendo mood/theme tracks.

    ``root`` is the dataset's ``data`` folder (holding ``autotagging_moodtheme.tsv`` and
    ``splits/split-N/``). With ``split=N`` the tracks and their splits come from the official
    ``split-N/<subset>-{train,validation,test}.tsv`` files (they carry the full rows); with
    ``split=None`` the whole ``<subset>.tsv`` is split by track with ``seed``/``fractions``.
    Audio paths are the TSV's PATH under ``audio_dir`` (default: ``root``); ``low_quality``
    maps ``48/948.mp3`` to the low-bitrate archive's ``48/948.low.mp3``.
    """
    root = existing_dir(root, "root")
    audio_root = root if audio_dir is None else existing_dir(audio_dir, "audio_dir")
    if split is None:
        tsv = _find_mtg_tsv(root, subset)
        rows = _read_mtg_tsv(tsv)
        splits = split_by_track([row[0] for row in rows], seed, fractions)
        sources = [(tsv, rows)]
    else:
        if isinstance(split, bool) or not isinstance(split, int) or split < 0:
            raise TypeError(f"split must be an int >= 0 (official split number) or None, got {split!r}")
        split_dir = _find_mtg_split_dir(root, split)
        sources, splits = [], {}
        for name in SPLITS:
            tsv = existing_file(split_dir / f"{subset}-{name}.tsv", f"split file for {name!r}")
            rows = _read_mtg_tsv(tsv)
            for row in rows:
                if row[0] in splits:  # the official files must not share a track: that would leak
                    raise ValueError(f"{tsv}: track {row[0]!r} is also in the {splits[row[0]]!r} split file")
                splits[row[0]] = name
            sources.append((tsv, rows))
    tracks = []
    for tsv, rows in sources:
        for track_id, artist_id, album_id, rel_path, duration, tags in rows:
            labels = checked_labels(track_id, tags, MTG_JAMENDO, str(tsv))
            audio = audio_root / _mtg_audio_path(rel_path, low_quality)
            if check_audio:
                check_audio_file(track_id, audio, str(tsv))
            extra = {"artist_id": artist_id, "album_id": album_id, "duration": duration, "path": rel_path}
            tracks.append(Track(track_id, str(audio), labels, splits[track_id], MTG_JAMENDO.name, extra))
    return tracks
