"""Indexing: embed every readable audio file under some paths once, resumably, with a progress bar.

A file is skipped when its track row says it was indexed with the same content: first by size and modification
time (the quick check git and rsync make, so a rerun over 5,000 files reads none of them), then by the content
hash of its bytes (a touched but unchanged file, a copy, or a move embeds nothing). Each file is committed as
soon as it is embedded (database.py says how), so a kill loses at most the file being embedded, and a rerun
picks up from there. Unreadable files are reported and skipped; the run goes on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from meralign.library.database import LibraryDatabase, TrackRow
from meralign.library.sources import SourceFile, check_paths, content_hash, find_audio, header_seconds

# Compact the tables every this many committed files: one commit per file leaves one small fragment each,
# and a table of thousands of fragments is several times slower to search.
COMPACT_EVERY = 500
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} audio h [{elapsed}<{remaining}]{postfix}"
# What `on_file(path, status)` is told after each file: newly embedded, a copy of stored content (nothing
# embedded), unchanged (already indexed), or unreadable (skipped).
STATUSES = ("indexed", "copy", "unchanged", "unreadable")


@dataclass
class IndexReport:
    """What one indexing run did. `unreadable` holds (path, reason); `ignored`, non-audio files in folders."""

    indexed: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0


def index_files(
    db: LibraryDatabase,
    pipe,
    paths,
    *,
    progress: bool | None = None,
    on_file: Callable[[str, str], None] | None = None,
    stream=None,
) -> IndexReport:
    """Embed the audio files under `paths` into `db` with the pipeline `pipe`; returns what was done.

    `progress`: a tqdm bar of audio hours with the file count and ETA (None: only on a terminal). `on_file`
    is called with (path, status) once each file is settled (committed, when written).
    """
    started = time.perf_counter()
    files, ignored = find_audio(check_paths(paths))
    report = IndexReport(ignored=ignored)
    committed = db.committed()
    todo = []
    for source in files:
        row = committed.get(source.path)
        if row is not None and (row.size, row.mtime_ns) == (source.size, source.mtime_ns):
            _settle(report.unchanged, source.path, "unchanged", on_file)
        else:
            todo.append((source, header_seconds(source.path)))
    known, rows_before = db.committed_hashes(), db.segments.count_rows()
    bar = _progress_bar(sum(s or 0.0 for _, s in todo), len(todo), progress, stream)
    try:
        for done, (source, seconds) in enumerate(todo, 1):
            status = _index_one(db, pipe, source, seconds, committed, known, report)
            buckets = {"indexed": report.indexed, "copy": report.copies, "unchanged": report.unchanged}
            _settle(buckets.get(status), source.path, status, on_file)
            bar.update((seconds or 0.0) / 3600)
            bar.set_postfix_str(f"files {done}/{len(todo)}", refresh=False)
            if done % COMPACT_EVERY == 0:
                db.compact()
    finally:
        bar.close()
    db.compact(rows_before)
    report.seconds = time.perf_counter() - started
    return report


def _settle(bucket: list | None, path: str, status: str, on_file) -> None:
    if bucket is not None:  # unreadable files are listed with their reason where they fail
        bucket.append(path)
    if on_file is not None:
        on_file(path, status)


def _index_one(db, pipe, source: SourceFile, seconds, committed: dict, known: set, report: IndexReport) -> str:
    """Index one file that failed the quick check; returns its status."""
    try:
        digest = content_hash(source.path)
    except OSError as err:
        report.unreadable.append((source.path, f"could not read the file: {err.strerror or err}"))
        return "unreadable"
    previous = committed.get(source.path)
    replaces = previous.content_hash if previous is not None else None
    if digest in known:  # a touched file (same content), a copy or a move: store a row, embed nothing
        db.add_copy(source, digest, seconds or 0.0, replaces=replaces)
        status = "unchanged" if replaces == digest else "copy"
    else:
        try:
            embeds, times = pipe.recording_embeddings(source.path, segment_seconds=db.info.segment_seconds)
        except ValueError as err:  # the pipeline's message for audio it cannot decode
            report.unreadable.append((source.path, str(err)))
            return "unreadable"
        duration = seconds if seconds is not None else times[-1][1]
        db.add_track(source, digest, duration, np.asarray(embeds, dtype=np.float32), times, replaces=replaces)
        known.add(digest)
        report.audio_seconds += duration
        status = "indexed"
    committed[source.path] = TrackRow(source.path, digest, source.size, source.mtime_ns)
    return status


def _progress_bar(total_seconds: float, n_files: int, progress: bool | None, stream):
    from tqdm import tqdm

    return tqdm(
        total=total_seconds / 3600,
        desc="indexing",
        bar_format=BAR_FORMAT,
        postfix=f"files 0/{n_files}",
        disable=None if progress is None else not progress,
        file=stream if stream is not None else sys.stderr,
        dynamic_ncols=True,
    )
