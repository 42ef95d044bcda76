"""CAL500: a folder of per-song annotation CSVs (one row per annotator), and the paper's ground-truth rule."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from meralign.data.adapters.checks import (
    build_tracks,
    check_audio_file,
    check_ext,
    check_top_n,
    checked_labels,
    existing_dir,
    path_argument,
)
from meralign.data.adapters.splits import DEFAULT_FRACTIONS, split_by_track
from meralign.data.tracks import Track
from meralign.vocabularies import CAL500, Vocabulary

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
        text = text[match.end() :]
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


def cal500_ground_truth(
    mean_ratings: Mapping[str, float], threshold: float = 4.0, top_n: int = 5, vocabulary: Vocabulary = CAL500
) -> tuple[str, ...]:
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
            raise ValueError(
                f"{path}: emotion tag {raw!r} maps to {label!r}, which is not a {vocabulary.name!r} label"
            )
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
                raise ValueError(
                    f"{path} row {number}: rating for {rows[0][index].strip()!r} must be a number, got {cell!r}"
                )
            sums[label] += value
            counts[label] += 1
    means = {label: sums[label] / counts[label] for label in sums if counts[label]}
    if not means:
        raise ValueError(f"{path}: every emotion rating is blank")
    return means, len(annotators)


def load_cal500(
    annotations_dir: str | Path,
    audio_dir: str | Path,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    audio_ext: str = ".mp3",
    annotation_ext: str = ".csv",
    threshold: float = 4.0,
    top_n: int = 5,
    check_audio: bool = False,
) -> list[Track]:
    """CAL500 songs from a folder of per-song annotation files ``<song>.csv``.

    Each file's header lists the tags (``Emotion-Angry_/_Agressive``, ..., other categories and
    ``NOT-Emotion-*`` columns are ignored); each row is one annotator's ratings. Ground truth is
    ``cal500_ground_truth`` of the per-tag mean ratings. Audio is ``<audio_dir>/<song><audio_ext>``;
    splits are seeded by song.
    """
    folder = existing_dir(annotations_dir, "annotations_dir")
    audio_root = path_argument(audio_dir, "audio_dir")
    check_ext(audio_ext, "audio_ext")
    check_ext(annotation_ext, "annotation_ext")
    check_top_n(top_n)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(annotation_ext))
    if not files:
        raise ValueError(f"annotations_dir {str(folder)!r} holds no '*{annotation_ext}' annotation files")
    rows = []
    for path in files:
        song = path.name[: -len(annotation_ext)]
        means, n_annotators = _read_cal500_song(path, CAL500)
        labels = checked_labels(song, cal500_ground_truth(means, threshold, top_n), CAL500, str(path))
        audio = audio_root / f"{song}{audio_ext}"
        if check_audio:
            check_audio_file(song, audio, str(path))
        rows.append((song, str(audio), labels, {"mean_ratings": means, "n_annotators": n_annotators}))
    return build_tracks(rows, CAL500.name, split_by_track([r[0] for r in rows], seed, fractions))
