"""Searching a library: tracks whose best moment matches some words, and tracks that feel like a given song.

Both are LanceDB vector searches (dot product: every stored vector is L2-normalised, so it is the cosine). A
search query is embedded like one label (the model's template), and scored against segments: a track ranks by
its best segment, which is reported with its start and end. `similar` embeds a file exactly as indexing does
and compares track vectors. A flat (exact) scan below database.VECTOR_INDEX_FROM segments, an IVF_FLAT index
search above; benchmarks/library.py measures both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meralign.library.database import LibraryDatabase, hash_filters, track_vector
from meralign.library.tagging import calibration, check_top, label_vectors
from scoring_meralign import segment_scores

FIRST_CANDIDATES = 64  # segments fetched per wanted track at first; more when they hold too few distinct tracks
# Partitions of the vector index (when there is one, database.VECTOR_INDEX_FROM) scanned per search: LanceDB's
# default (20) misses some of the true 10 nearest on benchmarks/library.py's random vectors at 100k segments, 64
# finds them all there at the same latency.
NPROBES = 64


def check_words(words) -> str:
    if not isinstance(words, str):
        raise TypeError(f"words must be a string such as 'melancholic but hopeful', got {type(words).__name__}")
    if not words.strip():
        raise ValueError("words is empty: describe what to search for, e.g. 'melancholic but hopeful'")
    return words


def search_library(db: LibraryDatabase, pipe, words, *, top: int = 10) -> list[dict]:
    """The `top` tracks whose best segment matches `words` most, best first.

    Each: {"path", "duration", "start", "end", "cosine", "score"}: the best segment's times, its cosine to the
    words, and the model's multi-label score for it (calibrated sigmoid: `tag --multi-label`'s scale)."""
    words, top = check_words(words), check_top(top, "--top")
    query = label_vectors(pipe, [words])[0].numpy()
    total = db.segments.count_rows()
    if not total:
        return []
    wanted = min(total, max(FIRST_CANDIDATES, 4 * top))
    while True:
        best = _best_segments(db, query, wanted)
        results = _with_tracks(db, best)
        if len(results) >= top or wanted >= total:
            break
        wanted = min(total, wanted * 4)
    results = results[:top]
    cosine = np.array([[r["cosine"]] for r in results], dtype=np.float64).reshape(-1, 1)
    for row, score in zip(results, segment_scores(cosine, multi_label=True, **calibration(pipe))[:, 0]):
        row["score"] = float(score)
    return results


def _best_segments(db: LibraryDatabase, query: np.ndarray, limit: int) -> dict[str, dict]:
    """The `limit` nearest segments, kept as the best one of each content, in rank order."""
    columns = ["content_hash", "segment", "start", "end", "_distance"]
    search = db.segments.search(query).distance_type("dot").nprobes(NPROBES).select(columns).limit(limit)
    hits = search.to_arrow().to_pylist()
    best: dict[str, dict] = {}
    for hit in hits:  # nearest first: the first hit of a content is its best segment
        if hit["content_hash"] not in best:
            best[hit["content_hash"]] = hit
    return best


def _with_tracks(db: LibraryDatabase, best: dict[str, dict]) -> list[dict]:
    """The paths holding each content (segments of no track row are skipped), in the segments' rank order."""
    paths: dict[str, list] = {}
    for where in hash_filters(best):
        rows = db.tracks.search().where(where).select(["path", "content_hash", "duration"]).limit(None).to_arrow()
        for row in rows.to_pylist():
            paths.setdefault(row["content_hash"], []).append(row)
    results = []
    for content, hit in best.items():
        for track in sorted(paths.get(content, []), key=lambda t: t["path"]):
            cosine = 1.0 - float(hit["_distance"])  # LanceDB's dot distance is 1 - dot
            row = {"path": track["path"], "duration": track["duration"], "start": hit["start"], "end": hit["end"]}
            results.append({**row, "cosine": cosine})
    return results


def similar_tracks(db: LibraryDatabase, pipe, file, *, top: int = 10) -> list[dict]:
    """The `top` tracks nearest `file` in emotion (cosine of track vectors), nearest first.

    `file` is embedded as indexing embeds a track, so the library's copy of it ranks first (cosine 1)."""
    top = check_top(top, "--top")
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(f"FILE must be an audio file path, got {type(file).__name__}")
    if not Path(file).is_file():
        raise ValueError(f"FILE {os.fspath(file)!r} does not exist (or is not a file)")
    embeds, _ = pipe.recording_embeddings(os.fspath(file), segment_seconds=db.info.segment_seconds)
    vector = track_vector(np.asarray(embeds, dtype=np.float32))
    columns = ["path", "duration", "_distance"]
    hits = db.tracks.search(vector).distance_type("dot").select(columns).limit(top).to_arrow().to_pylist()
    return [{"path": h["path"], "duration": h["duration"], "cosine": 1.0 - float(h["_distance"])} for h in hits]
