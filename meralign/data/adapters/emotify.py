"""Emotify: the game's ``data.csv`` of listener votes (GEMS-9), top 3 per track."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from meralign.data.adapters.checks import (
    build_tracks,
    check_audio_file,
    check_ext,
    check_top_n,
    checked_labels,
    existing_file,
    path_argument,
)
from meralign.data.adapters.splits import DEFAULT_FRACTIONS, split_by_track
from meralign.data.tracks import Track
from meralign.vocabularies import EMOTIFY, Vocabulary

# (genre, first id, last id): Emotify numbers its 400 excerpts 1..400, 100 per genre, and ships
# the audio as <genre>/<n>.mp3 with n counted from 1 inside the genre.
EMOTIFY_GENRES: tuple[tuple[str, int, int], ...] = (
    ("classical", 1, 100),
    ("rock", 101, 200),
    ("electronic", 201, 300),
    ("pop", 301, 400),
)


def emotify_ground_truth(
    votes: Mapping[str, int], top_n: int = 3, vocabulary: Vocabulary = EMOTIFY
) -> tuple[str, ...]:
    """The ``top_n`` labels by vote count (ties: vocabulary order); labels nobody chose are left out."""
    ranked = sorted(
        (label for label in votes if votes[label] > 0), key=lambda label: (-votes[label], vocabulary.index(label))
    )
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
        if (
            not isinstance(entry, (tuple, list))
            or len(entry) != 3
            or not isinstance(entry[0], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:])
            or entry[1] > entry[2]
        ):
            raise ValueError(f"genres must hold (name, first_id, last_id) with first <= last, got {entry!r}")
        out.append((entry[0], entry[1], entry[2]))
    spans = sorted((first, last) for _, first, last in out)
    for (_, last), (first, _) in zip(spans, spans[1:]):
        if first <= last:
            raise ValueError(f"genres must not overlap, got {out!r}")
    return out


def _read_emotify_votes(
    path: Path, vocabulary: Vocabulary
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
            raise ValueError(
                f"{path} line {number}: malformed row, expected at least {max(col.values()) + 1} "
                f"fields (through {required[-1]!r}), got {len(row)}"
            )
        cells = {name: row[index].strip() for name, index in col.items()}
        try:
            track_number = int(cells["track id"])
        except ValueError:
            raise ValueError(
                f"{path} line {number}: 'track id' must be an integer, got {cells['track id']!r}"
            ) from None
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


def load_emotify(
    data_csv: str | Path,
    audio_dir: str | Path,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    top_n: int = 3,
    audio_ext: str = ".mp3",
    genres: Sequence[tuple[str, int, int]] = EMOTIFY_GENRES,
    check_genre: bool = True,
    check_audio: bool = False,
) -> list[Track]:
    """Emotify excerpts from the game's ``data.csv`` (one row per listener answer, 0/1 per GEMS label).

    Ground truth is the ``top_n`` GEMS labels by vote count. Audio is
    ``<audio_dir>/<genre>/<n><audio_ext>`` with the genre and in-genre number from ``genres``;
    with ``check_genre`` the csv's genre column must agree with that mapping.
    """
    path = existing_file(data_csv, "data_csv")
    audio_root = path_argument(audio_dir, "audio_dir")
    check_ext(audio_ext, "audio_ext")
    check_top_n(top_n)
    genre_table = _check_genres(genres)
    votes, genre_column, listeners = _read_emotify_votes(path, EMOTIFY)
    rows = []
    for track_number in sorted(votes):
        track_id = str(track_number)
        genre, n = _emotify_location(track_number, genre_table)
        if check_genre and genre_column[track_number] != genre.lower():
            raise ValueError(
                f"{path}: track {track_id!r} has genre {genre_column[track_number]!r} in the csv "
                f"but {genre!r} by its id under genres={genre_table!r}"
            )
        try:
            truth = emotify_ground_truth(votes[track_number], top_n)
        except ValueError:
            raise ValueError(f"{path}: track {track_id!r} received no vote for any GEMS label") from None
        labels = checked_labels(track_id, truth, EMOTIFY, str(path))
        audio = audio_root / genre / f"{n}{audio_ext}"
        if check_audio:
            check_audio_file(track_id, audio, str(path))
        extra = {"genre": genre, "votes": dict(votes[track_number]), "n_listeners": listeners[track_number]}
        rows.append((track_id, str(audio), labels, extra))
    return build_tracks(rows, EMOTIFY.name, split_by_track([r[0] for r in rows], seed, fractions))
