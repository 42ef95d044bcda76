"""Dataset adapters: read each emotion dataset in its native, published layout and yield Tracks.

Every adapter returns ``list[Track]`` with the ``dataset`` field set and every label checked
against the dataset's vocabulary, so that nothing downstream (feature cache, training,
evaluation) has to know where a label came from. Splits are assigned per TRACK, never per
segment: a song's segments can never straddle train and test (the reference code's defect).

Adapters:

- ``load_mtg_jamendo``: ``autotagging_moodtheme.tsv`` and the official ``splits/split-N`` files.
- ``load_cal500``: a folder of per-song annotation CSVs (one row per annotator).
- ``load_emotify``: the Emotify game's ``data.csv`` of listener votes.
- ``load_manifest``: a generic CSV/JSONL list of ``path, labels[, track_id][, split]``.
- ``load_hf_dataset``: a ``datasets.Dataset`` with an audio and a labels column.

``split_by_track`` is the one seeded splitter all of them (and the synthetic corpus) share.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from meralign.data.tracks import SPLITS, Track
from meralign.vocabularies import CAL500, EMOTIFY, MTG_JAMENDO, Vocabulary, load_vocabulary

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)

__all__ = [
    "ADAPTERS",
    "DEFAULT_FRACTIONS",
    "EMOTIFY_GENRES",
    "cal500_ground_truth",
    "emotify_ground_truth",
    "load_cal500",
    "load_dataset_tracks",
    "load_emotify",
    "load_hf_dataset",
    "load_manifest",
    "load_mtg_jamendo",
    "normalize_cal500_tag",
    "split_by_track",
    "split_counts",
]


# --------------------------------------------------------------------------------------------
# Shared helpers: splits, label checks, paths
# --------------------------------------------------------------------------------------------

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
    return hashlib.sha256(f"{seed}\x00{track_id}".encode("utf-8")).digest()


def split_by_track(track_ids: Iterable[str], seed: int = 0,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, str]:
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


def _checked_labels(track_id: str, labels: Iterable[str], vocabulary: Vocabulary, source: str) -> tuple[str, ...]:
    """Labels de-duplicated in order; any label outside the vocabulary is an error naming the track."""
    out: list[str] = []
    for label in labels:
        if not isinstance(label, str):
            raise TypeError(f"{source}: track {track_id!r} has a label that is not a string: {label!r}")
        if label not in vocabulary.labels:
            raise ValueError(f"{source}: track {track_id!r} has label {label!r}, which is not in "
                             f"vocabulary {vocabulary.name!r} ({len(vocabulary)} labels)")
        if label not in out:
            out.append(label)
    if not out:
        raise ValueError(f"{source}: track {track_id!r} has no labels")
    return tuple(out)


def _existing_dir(value: str | Path, argument: str) -> Path:
    path = _path_argument(value, argument)
    if not path.is_dir():
        raise ValueError(f"{argument} must be an existing folder, got {str(path)!r}")
    return path


def _existing_file(value: str | Path, argument: str) -> Path:
    path = _path_argument(value, argument)
    if not path.is_file():
        raise ValueError(f"{argument} must be an existing file, got {str(path)!r}")
    return path


def _path_argument(value: Any, argument: str) -> Path:
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{argument} must be a path (str or Path), got {type(value).__name__}")
    return Path(value)


def _check_ext(value: Any, argument: str) -> None:
    if not isinstance(value, str) or not value.startswith(".") or len(value) < 2:
        raise ValueError(f"{argument} must be a file extension starting with '.', e.g. '.mp3', got {value!r}")


def _check_top_n(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"top_n must be an int >= 1, got {value!r}")


def _check_audio_file(track_id: str, path: Path, source: str) -> None:
    if not path.is_file():
        raise ValueError(f"{source}: audio of track {track_id!r} not found at {str(path)!r}")


def _build_tracks(rows: list[tuple[str, Any, tuple[str, ...], dict]], dataset: str,
                  splits: Mapping[str, str]) -> list[Track]:
    return [Track(track_id=tid, audio=audio, labels=labels, split=splits[tid], dataset=dataset, extra=extra)
            for tid, audio, labels, extra in rows]


def _check_unique(ids: Iterable[str], source: str) -> None:
    seen: set[str] = set()
    for track_id in ids:
        if track_id in seen:
            raise ValueError(f"{source}: track id {track_id!r} appears more than once")
        seen.add(track_id)


# --------------------------------------------------------------------------------------------
# MTG-Jamendo mood/theme
# --------------------------------------------------------------------------------------------

MTG_HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
MTG_TAG_PREFIX = "mood/theme---"
_MTG_TRACK_ID = re.compile(r"track_\d+")


def _parse_mtg_row(fields: list[str], where: str) -> tuple[str, str, str, str, float, list[str]]:
    while fields and not fields[-1].strip():  # a trailing tab is harmless; a missing column is not
        fields = fields[:-1]
    if len(fields) < 6:
        raise ValueError(f"{where}: malformed row, expected at least 6 tab-separated fields "
                         f"({', '.join(MTG_HEADER)}), got {len(fields)}")
    track_id, artist_id, album_id, rel_path, duration_text = (f.strip() for f in fields[:5])
    if not _MTG_TRACK_ID.fullmatch(track_id):
        raise ValueError(f"{where}: malformed row, TRACK_ID must look like 'track_0000948', got {track_id!r}")
    if not rel_path:
        raise ValueError(f"{where}: malformed row, PATH of track {track_id!r} is empty")
    try:
        duration = float(duration_text)
    except ValueError:
        raise ValueError(f"{where}: malformed row, DURATION of track {track_id!r} must be a number, "
                         f"got {duration_text!r}") from None
    tags = []
    for raw in fields[5:]:
        raw = raw.strip()
        if not raw.startswith(MTG_TAG_PREFIX) or len(raw) == len(MTG_TAG_PREFIX):
            raise ValueError(f"{where}: malformed row, tags of track {track_id!r} must look like "
                             f"'{MTG_TAG_PREFIX}<tag>', got {raw!r}")
        tags.append(raw[len(MTG_TAG_PREFIX):])
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
    rows = [_parse_mtg_row(line.split("\t"), f"{path} line {number}")
            for number, line in enumerate(lines[1:], start=2) if line.strip()]
    _check_unique((row[0] for row in rows), str(path))
    return rows


def _mtg_audio_path(rel_path: str, low_quality: bool) -> str:
    # The low-bitrate archive names its files "<id>.low.mp3" under the same folders.
    if low_quality and not rel_path.endswith(".low.mp3"):
        stem, dot, ext = rel_path.rpartition(".")
        rel_path = f"{stem}.low.{ext}" if dot else f"{rel_path}.low"
    return rel_path


def _find_mtg_split_dir(root: Path, split: int) -> Path:
    # The official repository keeps them under data/splits/split-N; accept the folder itself too.
    candidates = [root / "splits" / f"split-{split}", root / f"split-{split}",
                  root / "data" / "splits" / f"split-{split}"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ValueError(f"split={split}: no official split folder found; looked for "
                     + ", ".join(repr(str(c)) for c in candidates))


def _find_mtg_tsv(root: Path, subset: str) -> Path:
    candidates = [root / f"{subset}.tsv", root / "data" / f"{subset}.tsv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError("root: annotation file not found; looked for " + ", ".join(repr(str(c)) for c in candidates))


def load_mtg_jamendo(root: str | Path, split: int | None = 0, audio_dir: str | Path | None = None,
                     low_quality: bool = False, seed: int = 0,
                     fractions: Sequence[float] = DEFAULT_FRACTIONS, check_audio: bool = False,
                     subset: str = "autotagging_moodtheme") -> list[Track]:
    """MTG-Jamendo mood/theme tracks.

    ``root`` is the dataset's ``data`` folder (holding ``autotagging_moodtheme.tsv`` and
    ``splits/split-N/``). With ``split=N`` the tracks and their splits come from the official
    ``split-N/<subset>-{train,validation,test}.tsv`` files (they carry the full rows); with
    ``split=None`` the whole ``<subset>.tsv`` is split by track with ``seed``/``fractions``.
    Audio paths are the TSV's PATH under ``audio_dir`` (default: ``root``); ``low_quality``
    maps ``48/948.mp3`` to the low-bitrate archive's ``48/948.low.mp3``.
    """
    root = _existing_dir(root, "root")
    audio_root = root if audio_dir is None else _existing_dir(audio_dir, "audio_dir")
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
            tsv = _existing_file(split_dir / f"{subset}-{name}.tsv", f"split file for {name!r}")
            rows = _read_mtg_tsv(tsv)
            for row in rows:
                if row[0] in splits:  # the official files must not share a track: that would leak
                    raise ValueError(f"{tsv}: track {row[0]!r} is also in the {splits[row[0]]!r} split file")
                splits[row[0]] = name
            sources.append((tsv, rows))
    tracks = []
    for tsv, rows in sources:
        for track_id, artist_id, album_id, rel_path, duration, tags in rows:
            labels = _checked_labels(track_id, tags, MTG_JAMENDO, str(tsv))
            audio = audio_root / _mtg_audio_path(rel_path, low_quality)
            if check_audio:
                _check_audio_file(track_id, audio, str(tsv))
            extra = {"artist_id": artist_id, "album_id": album_id, "duration": duration, "path": rel_path}
            tracks.append(Track(track_id, str(audio), labels, splits[track_id], MTG_JAMENDO.name, extra))
    return tracks


# --------------------------------------------------------------------------------------------
# CAL500 per-song annotations
# --------------------------------------------------------------------------------------------

_CAL500_EMOTION = re.compile(r"emotion[-_ ]+", re.IGNORECASE)
_CAL500_NEGATED = re.compile(r"(not[-_ ]+emotion|emotion[-_ ]+not)[-_ ]", re.IGNORECASE)


def normalize_cal500_tag(raw: str) -> str:
    """Canonical label for a raw CAL500 emotion tag: ``Emotion-Angry_/_Agressive`` -> ``angry, aggressive``.

    Lowercase, ``_/_`` (any slash) -> ", ", underscores -> spaces, and CAL500's misspelling
    "agressive" fixed, so the canonical label is embedded as a real word.
    """
    if not isinstance(raw, str):
        raise TypeError(f"raw must be a str, got {type(raw).__name__}")
    text = raw.strip()
    match = _CAL500_EMOTION.match(text)
    if match:
        text = text[match.end():]
    text = text.lower().replace("_", " ")
    text = re.sub(r"\s*/\s*", ", ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\bagressive\b", "aggressive", text)


def _cal500_column_kind(name: str) -> str:
    """'emotion', 'negated' (NOT-Emotion-*, ignored) or 'other' (genre, instrument, ... ignored)."""
    if _CAL500_NEGATED.match(name):
        return "negated"
    if _CAL500_EMOTION.match(name):
        return "emotion"
    return "other"


def cal500_ground_truth(mean_ratings: Mapping[str, float], threshold: float = 4.0, top_n: int = 5,
                        vocabulary: Vocabulary = CAL500) -> tuple[str, ...]:
    """The paper's CAL500 ground truth from per-label mean ratings.

    The ``top_n`` labels by mean when any mean exceeds ``threshold`` (strictly), else the single
    argmax. Ties go to vocabulary order, so the result never depends on dict order.
    """
    if not mean_ratings:
        raise ValueError("mean_ratings is empty: a song needs at least one rated emotion tag")
    ranked = sorted(mean_ratings, key=lambda label: (-mean_ratings[label], vocabulary.index(label)))
    if any(value > threshold for value in mean_ratings.values()):
        return tuple(ranked[:top_n])
    return (ranked[0],)


def _read_cal500_song(path: Path, vocabulary: Vocabulary) -> tuple[dict[str, float], int]:
    """Mean rating per canonical emotion label, and the number of annotators, for one song file."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path}: empty annotation file, expected a header row of tags")
    columns: dict[int, str] = {}
    for index, raw in enumerate(rows[0]):
        raw = raw.strip()
        if _cal500_column_kind(raw) != "emotion":
            continue
        label = normalize_cal500_tag(raw)
        if label not in vocabulary.labels:
            raise ValueError(f"{path}: emotion tag {raw!r} maps to {label!r}, which is not a "
                             f"{vocabulary.name!r} label")
        if label in columns.values():
            raise ValueError(f"{path}: two columns map to the label {label!r} (second: {raw!r})")
        columns[index] = label
    if not columns:
        raise ValueError(f"{path}: no 'Emotion-*' column in the header {rows[0]!r}")
    annotators = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    if not annotators:
        raise ValueError(f"{path}: no annotator rows under the header")
    sums = {label: 0.0 for label in columns.values()}
    counts = {label: 0 for label in columns.values()}
    for number, row in annotators:
        for index, label in columns.items():
            cell = row[index].strip() if index < len(row) else ""
            if not cell:  # an annotator may skip a question: leave it out of the mean
                continue
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{path} row {number}: rating for {rows[0][index].strip()!r} must be a number, "
                                 f"got {cell!r}")
            sums[label] += value
            counts[label] += 1
    means = {label: sums[label] / counts[label] for label in sums if counts[label]}
    if not means:
        raise ValueError(f"{path}: every emotion rating is blank")
    return means, len(annotators)


def load_cal500(annotations_dir: str | Path, audio_dir: str | Path, seed: int = 0,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, audio_ext: str = ".mp3",
                annotation_ext: str = ".csv", threshold: float = 4.0, top_n: int = 5,
                check_audio: bool = False) -> list[Track]:
    """CAL500 songs from a folder of per-song annotation files ``<song>.csv``.

    Each file's header lists the tags (``Emotion-Angry_/_Agressive``, ..., other categories and
    ``NOT-Emotion-*`` columns are ignored); each row is one annotator's ratings. Ground truth is
    ``cal500_ground_truth`` of the per-tag mean ratings. Audio is ``<audio_dir>/<song><audio_ext>``;
    splits are seeded by song.
    """
    folder = _existing_dir(annotations_dir, "annotations_dir")
    audio_root = _path_argument(audio_dir, "audio_dir")
    _check_ext(audio_ext, "audio_ext")
    _check_ext(annotation_ext, "annotation_ext")
    _check_top_n(top_n)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(annotation_ext))
    if not files:
        raise ValueError(f"annotations_dir {str(folder)!r} holds no '*{annotation_ext}' annotation files")
    rows = []
    for path in files:
        song = path.name[: -len(annotation_ext)]
        means, n_annotators = _read_cal500_song(path, CAL500)
        labels = _checked_labels(song, cal500_ground_truth(means, threshold, top_n), CAL500, str(path))
        audio = audio_root / f"{song}{audio_ext}"
        if check_audio:
            _check_audio_file(song, audio, str(path))
        rows.append((song, str(audio), labels, {"mean_ratings": means, "n_annotators": n_annotators}))
    return _build_tracks(rows, CAL500.name, split_by_track([r[0] for r in rows], seed, fractions))


# --------------------------------------------------------------------------------------------
# Emotify
# --------------------------------------------------------------------------------------------

# (genre, first id, last id): Emotify numbers its 400 excerpts 1..400, 100 per genre, and ships
# the audio as <genre>/<n>.mp3 with n counted from 1 inside the genre.
EMOTIFY_GENRES: tuple[tuple[str, int, int], ...] = (
    ("classical", 1, 100), ("rock", 101, 200), ("electronic", 201, 300), ("pop", 301, 400),
)


def emotify_ground_truth(votes: Mapping[str, int], top_n: int = 3,
                         vocabulary: Vocabulary = EMOTIFY) -> tuple[str, ...]:
    """The ``top_n`` labels by vote count (ties: vocabulary order); labels nobody chose are left out."""
    ranked = sorted((label for label in votes if votes[label] > 0),
                    key=lambda label: (-votes[label], vocabulary.index(label)))
    if not ranked:
        raise ValueError("votes has no label with a vote: no ground truth can be derived")
    return tuple(ranked[:top_n])


def _emotify_location(track_number: int, genres: Sequence[tuple[str, int, int]]) -> tuple[str, int]:
    for genre, first, last in genres:
        if first <= track_number <= last:
            return genre, track_number - first + 1
    raise ValueError(f"track id {track_number} is in no genre range of genres={list(genres)!r}")


def _check_genres(genres: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    out = []
    for entry in genres:
        if (not isinstance(entry, (tuple, list)) or len(entry) != 3 or not isinstance(entry[0], str)
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:]) or entry[1] > entry[2]):
            raise ValueError(f"genres must hold (name, first_id, last_id) with first <= last, got {entry!r}")
        out.append((entry[0], entry[1], entry[2]))
    spans = sorted((first, last) for _, first, last in out)
    for (_, last), (first, _) in zip(spans, spans[1:]):
        if first <= last:
            raise ValueError(f"genres must not overlap, got {out!r}")
    return out


def _read_emotify_votes(path: Path, vocabulary: Vocabulary
                        ) -> tuple[dict[int, dict[str, int]], dict[int, str], dict[int, int]]:
    """Vote counts per track and label, the genre column per track, and the listener count."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    if not rows:
        raise ValueError(f"{path}: empty file, expected a header with 'track id', 'genre' and the GEMS labels")
    header = [name.strip().lower() for name in rows[0]]
    required = ["track id", "genre", *vocabulary.labels]
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(f"{path}: header lacks the columns {missing!r}; got {rows[0]!r}")
    col = {name: header.index(name) for name in required}
    votes: dict[int, dict[str, int]] = {}
    genre_of: dict[int, str] = {}
    listeners: dict[int, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(col.values()):
            raise ValueError(f"{path} line {number}: malformed row, expected at least {max(col.values()) + 1} "
                             f"fields (through {required[-1]!r}), got {len(row)}")
        cells = {name: row[index].strip() for name, index in col.items()}
        try:
            track_number = int(cells["track id"])
        except ValueError:
            raise ValueError(f"{path} line {number}: 'track id' must be an integer, "
                             f"got {cells['track id']!r}") from None
        counts = votes.setdefault(track_number, {label: 0 for label in vocabulary.labels})
        for label in vocabulary.labels:
            if cells[label] not in ("0", "1"):
                raise ValueError(f"{path} line {number}: vote for {label!r} must be 0 or 1, got {cells[label]!r}")
            counts[label] += int(cells[label])
        genre_of.setdefault(track_number, cells["genre"].lower())
        listeners[track_number] = listeners.get(track_number, 0) + 1
    if not votes:
        raise ValueError(f"{path}: no rows of votes under the header")
    return votes, genre_of, listeners


def load_emotify(data_csv: str | Path, audio_dir: str | Path, seed: int = 0,
                 fractions: Sequence[float] = DEFAULT_FRACTIONS, top_n: int = 3, audio_ext: str = ".mp3",
                 genres: Sequence[tuple[str, int, int]] = EMOTIFY_GENRES, check_genre: bool = True,
                 check_audio: bool = False) -> list[Track]:
    """Emotify excerpts from the game's ``data.csv`` (one row per listener answer, 0/1 per GEMS label).

    Ground truth is the ``top_n`` GEMS labels by vote count. Audio is
    ``<audio_dir>/<genre>/<n><audio_ext>`` with the genre and in-genre number from ``genres``;
    with ``check_genre`` the csv's genre column must agree with that mapping.
    """
    path = _existing_file(data_csv, "data_csv")
    audio_root = _path_argument(audio_dir, "audio_dir")
    _check_ext(audio_ext, "audio_ext")
    _check_top_n(top_n)
    genre_table = _check_genres(genres)
    votes, genre_column, listeners = _read_emotify_votes(path, EMOTIFY)
    rows = []
    for track_number in sorted(votes):
        track_id = str(track_number)
        genre, n = _emotify_location(track_number, genre_table)
        if check_genre and genre_column[track_number] != genre.lower():
            raise ValueError(f"{path}: track {track_id!r} has genre {genre_column[track_number]!r} in the csv "
                             f"but {genre!r} by its id under genres={genre_table!r}")
        try:
            truth = emotify_ground_truth(votes[track_number], top_n)
        except ValueError:
            raise ValueError(f"{path}: track {track_id!r} received no vote for any GEMS label") from None
        labels = _checked_labels(track_id, truth, EMOTIFY, str(path))
        audio = audio_root / genre / f"{n}{audio_ext}"
        if check_audio:
            _check_audio_file(track_id, audio, str(path))
        extra = {"genre": genre, "votes": dict(votes[track_number]), "n_listeners": listeners[track_number]}
        rows.append((track_id, str(audio), labels, extra))
    return _build_tracks(rows, EMOTIFY.name, split_by_track([r[0] for r in rows], seed, fractions))


# --------------------------------------------------------------------------------------------
# Generic manifest (CSV / JSONL)
# --------------------------------------------------------------------------------------------

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
                raise ValueError(f"{path}: header must have the columns 'path' and 'labels', got {reader.fieldnames!r}")
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


def load_manifest(path: str | Path, vocabulary: Any, seed: int = 0,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS, separator: str = ";",
                  name: str | None = None, check_audio: bool = False) -> list[Track]:
    """Tracks from a CSV or JSONL manifest with ``path``, ``labels``, optional ``track_id`` and ``split``.

    ``path`` is relative to the manifest's folder unless absolute. CSV labels are one string
    split on ``separator`` (";" or "|"); JSONL labels are a list. ``track_id`` defaults to the
    audio file's stem. If any record gives a split every record must; otherwise splits are
    seeded by track. ``vocabulary`` is anything ``load_vocabulary`` accepts; ``name`` (default:
    the manifest's stem) becomes each Track's ``dataset``. Other columns go to ``Track.extra``.
    """
    manifest = _existing_file(path, "path")
    if manifest.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"path must be a .csv or .jsonl manifest, got {str(manifest)!r}")
    if not isinstance(separator, str) or not separator or separator.isspace() or separator == ",":
        raise ValueError(f"separator must be a non-blank string other than ',' (e.g. ';' or '|'), got {separator!r}")
    vocab = load_vocabulary(vocabulary)
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
        labels = _checked_labels(track_id, labels, vocab, where)
        if record.get("split"):
            if record["split"] not in SPLITS:
                raise ValueError(f"{where}: split of track {track_id!r} must be one of {SPLITS}, "
                                 f"got {record['split']!r}")
            given_splits[track_id] = record["split"]
        if check_audio:
            _check_audio_file(track_id, audio_path, where)
        extra = {k: v for k, v in record.items() if k not in ("path", "labels", "track_id", "split")}
        rows.append((track_id, str(audio_path), labels, extra))
    _check_unique((r[0] for r in rows), str(manifest))
    if given_splits and len(given_splits) != len(rows):
        missing = next(r[0] for r in rows if r[0] not in given_splits)
        raise ValueError(f"{manifest}: some records give a split and others do not (track {missing!r} has none); "
                         "give every record a split or none")
    splits = given_splits or split_by_track([r[0] for r in rows], seed, fractions)
    return _build_tracks(rows, dataset, splits)


# --------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------

def _classlabel_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column, or of a List/LargeList/Sequence of ClassLabel; else None."""
    from datasets import ClassLabel

    for candidate in (feature, getattr(feature, "feature", None)):
        if isinstance(candidate, ClassLabel):
            return list(candidate.names)
    return None


def _label_decoder(feature: Any, column: str) -> Callable[[Any, str], list[str]]:
    """A function turning a labels cell into label names, from the column's feature type."""
    names = _classlabel_names(feature)

    def decode(value: Any, track_id: str) -> list[str]:
        items = value if isinstance(value, (list, tuple)) else [value]
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int) and not isinstance(item, bool) and names is not None:
                if not 0 <= item < len(names):
                    raise ValueError(f"{column!r} of track {track_id!r}: class id {item} is outside the "
                                     f"ClassLabel's {len(names)} names")
                out.append(names[item])
            else:
                raise TypeError(f"{column!r} of track {track_id!r} must hold label strings or ClassLabel ids, "
                                f"got {item!r} ({type(item).__name__})")
        return out

    return decode


def _hf_audio_value(value: Any, track_id: str, column: str) -> Any:
    # Bytes win: a Hub dataset's "path" is often just a file name inside an archive.
    if not isinstance(value, dict):
        raise TypeError(f"{column!r} of track {track_id!r} must be an audio {{'path', 'bytes'}} value, "
                        f"got {type(value).__name__}")
    if value.get("bytes"):
        return value["bytes"]
    if value.get("path"):
        return value["path"]
    raise ValueError(f"{column!r} of track {track_id!r} has neither bytes nor a path")


def _hf_tracks(ds: Any, split_name: str | None, vocab: Vocabulary | None, audio_column: str, labels_column: str,
               track_id_column: str | None, split_column: str | None) -> tuple[list, dict[str, str], Vocabulary]:
    """Rows and any explicit splits of one ``datasets.Dataset``."""
    from datasets import Audio

    for argument, column in (("audio_column", audio_column), ("labels_column", labels_column),
                             ("track_id_column", track_id_column), ("split_column", split_column)):
        if column is not None and column not in ds.column_names:
            raise ValueError(f"{argument} {column!r} is not a column of the dataset (columns: {ds.column_names})")
    feature = ds.features[labels_column]
    if vocab is None:
        names = _classlabel_names(feature)
        if names is None:
            raise TypeError("vocabulary is required when the labels column holds strings rather than ClassLabel ids")
        vocab = Vocabulary("hf", tuple(names))
    keep = [c for c in (audio_column, labels_column, track_id_column, split_column) if c]
    try:
        # decode=False gives {"path", "bytes"} without torchcodec/FFmpeg; soundfile decodes later.
        table = ds.select_columns(keep).cast_column(audio_column, Audio(decode=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"audio_column {audio_column!r} cannot be read as audio ({error})") from None
    decode = _label_decoder(feature, labels_column)
    rows, splits = [], {}
    for index, record in enumerate(table):
        if track_id_column:
            track_id = str(record[track_id_column])
        else:
            track_id = f"{split_name}-{index}" if split_name else str(index)
        where = f"dataset row {index}" + (f" of split {split_name!r}" if split_name else "")
        labels = _checked_labels(track_id, decode(record[labels_column], track_id), vocab, where)
        audio = _hf_audio_value(record[audio_column], track_id, audio_column)
        rows.append((track_id, audio, labels, {"row": index}))
        if split_name:
            splits[track_id] = split_name
        elif split_column:
            value = record[split_column]
            if value not in SPLITS:
                raise ValueError(f"{where}: {split_column!r} of track {track_id!r} must be one of {SPLITS}, "
                                 f"got {value!r}")
            splits[track_id] = value
    return rows, splits, vocab


def load_hf_dataset(ds: Any, vocabulary: Any = None, audio_column: str = "audio", labels_column: str = "labels",
                    track_id_column: str | None = None, split_column: str | None = None, seed: int = 0,
                    fractions: Sequence[float] = DEFAULT_FRACTIONS, name: str | None = None) -> list[Track]:
    """Tracks from a ``datasets.Dataset`` (or a ``DatasetDict`` keyed by split) with audio and labels.

    Audio comes out undecoded (bytes when present, else the path): the column is cast to
    ``Audio(decode=False)`` because datasets' own decoder needs torchcodec/FFmpeg. Labels may be
    strings or ClassLabel ids (single or a list). ``vocabulary`` defaults to the ClassLabel
    names. ``track_id_column`` defaults to "track_id" when present, else the row index.
    Splits: the DatasetDict's keys, else ``split_column`` (default "split" when present), else
    seeded by track.
    """
    import datasets

    vocab = load_vocabulary(vocabulary) if vocabulary is not None else None
    if isinstance(ds, datasets.DatasetDict):
        parts = list(ds.items())
        bad = [key for key, _ in parts if key not in SPLITS]
        if bad:
            raise ValueError(f"ds: DatasetDict keys must be split names {SPLITS}, got {bad!r}")
    elif isinstance(ds, datasets.Dataset):
        parts = [(None, ds)]
    else:
        raise TypeError(f"ds must be a datasets.Dataset or DatasetDict, got {type(ds).__name__}")
    rows, splits = [], {}
    for split_name, part in parts:
        id_column = track_id_column or ("track_id" if "track_id" in part.column_names else None)
        s_column = split_column or ("split" if split_name is None and "split" in part.column_names else None)
        part_rows, part_splits, vocab = _hf_tracks(part, split_name, vocab, audio_column, labels_column,
                                                   id_column, s_column)
        rows.extend(part_rows)
        splits.update(part_splits)
    _check_unique((r[0] for r in rows), "ds")
    if len(splits) != len(rows):
        splits = split_by_track([r[0] for r in rows], seed, fractions)
    return _build_tracks(rows, name or vocab.name, splits)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

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
