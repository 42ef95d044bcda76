"""The library's database: LanceDB tables of segment vectors, track vectors, and the model they came from.

One LanceDB folder (the --db) holds three tables:

- `library`: one row, written last when the database is created (so it is the database's own commit marker):
  the format, the model id and fingerprint, the segment length and the vector size.
- `segments`: one row per segment of each distinct content: content_hash, segment index, start and end
  (seconds), vector (float32, L2-normalised, as the pipeline computes it).
- `tracks`: one row per file path: path, content_hash, size, mtime_ns, duration, segment count, and the track
  vector (the normalised mean of its segment vectors).

Transactions. LanceDB commits each write atomically per table, never across tables, so a track is written in
an order that makes its `tracks` row the commit marker:

1. its segments are appended to `segments` (one commit). Until step 2 they belong to no track, and every reader
   ignores segments whose content_hash has no track row;
2. its track row is upserted into `tracks`, keyed by path (one merge_insert commit, so a file whose content
   changed swaps its row in one step);
3. the segments of the content the path held before are deleted if no other track row uses them.

A kill between steps 1 and 2, or 2 and 3, leaves segments that no track uses. The next writer deletes them
when it opens the database (`repair`). So a kill at any moment leaves the database as it was after some step,
with all the segments of every track row. One writer at a time holds the lock file, so the repair never
deletes segments that another indexer is about to commit. Segments are keyed by content, so a file found at
a second path (a copy, or a move) adds a track row and embeds nothing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

# Before lancedb loads: its Rust logger otherwise warns on stderr each time a table is created.
os.environ.setdefault("LANCEDB_LOG", "error")

import lancedb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

FORMAT = 1
META, SEGMENTS, TRACKS = "library", "segments", "tracks"
LOCK_NAME = ".meralign-index.lock"
# Compaction drops the versions older than this: a query that opened one a moment earlier still finds its files.
CLEANUP_AFTER = timedelta(minutes=1)
FILTER_CHUNK = 512  # content hashes per SQL `IN (...)` filter
# From this many segments on, the segments get an IVF_FLAT vector index (benchmarks/library.py): LanceDB then
# keeps the vectors in memory, partitioned, and a warm search over 100k segments takes ~10 ms instead of the
# ~250 ms of a flat scan that reads them from disk each time. Below it a flat scan is fast and exact.
VECTOR_INDEX_FROM = 20_000


@dataclass(frozen=True)
class LibraryInfo:
    """The `library` row: what every stored vector depends on."""

    model_id: str
    fingerprint: str
    segment_seconds: float
    dim: int
    format: int = FORMAT


@dataclass(frozen=True)
class TrackRow:
    """A committed track, as the indexer needs it to skip unchanged files."""

    path: str
    content_hash: str
    size: int
    mtime_ns: int


def segment_schema(dim: int) -> pa.Schema:
    fields = [("content_hash", pa.string()), ("segment", pa.int32()), ("start", pa.float64()), ("end", pa.float64())]
    return pa.schema([*fields, ("vector", pa.list_(pa.float32(), dim))])


def track_schema(dim: int) -> pa.Schema:
    fields = [("path", pa.string()), ("content_hash", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())]
    fields += [("duration", pa.float64()), ("segments", pa.int32())]
    return pa.schema([*fields, ("vector", pa.list_(pa.float32(), dim))])


META_SCHEMA = pa.schema(
    [("model_id", pa.string()), ("fingerprint", pa.string()), ("segment_seconds", pa.float64())]
    + [("dim", pa.int32()), ("format", pa.int32()), ("created", pa.string())]
)


def track_vector(embeds: np.ndarray) -> np.ndarray:
    """A track's vector: the L2-normalised mean of its segment vectors (cosine = dot product, like segments)."""
    mean = np.asarray(embeds, dtype=np.float64).mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


def vector_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def vectors_of(column) -> np.ndarray:
    """A vector column (chunked or not) as a float32 array [rows, dim]."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)


def hash_filters(hashes) -> list[str]:
    """SQL filters selecting `hashes` (hex digests, checked: they are pasted into the filter text)."""
    hashes = sorted(hashes)
    for value in hashes:
        if not (isinstance(value, str) and value and all(c in "0123456789abcdef" for c in value)):
            raise ValueError(f"content hash must be a lowercase hex digest, got {value!r}")
    chunks = [hashes[i : i + FILTER_CHUNK] for i in range(0, len(hashes), FILTER_CHUNK)]
    return ["content_hash IN (" + ", ".join(f"'{h}'" for h in chunk) + ")" for chunk in chunks]


# ---------------------------------------------------------------------------------------------- location
def db_path(path) -> Path:
    """The --db argument as an absolute path (a folder path is expected)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"--db must be a folder path, got {path!r}")
    return Path(path).expanduser().absolute()


def check_db_location(path) -> Path:
    """The --db folder, created if needed, checked writable before any model is loaded or file embedded."""
    path = db_path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--db {str(path)!r} is a file: expected a folder for the library's database")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".meralign-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"--db {str(path)!r} is not a writable location: {err.strerror or err}") from None
    return path


def read_info(path) -> LibraryInfo | None:
    """The `library` row of the database at `path`, or None when there is no library there yet."""
    path = db_path(path)
    if not path.is_dir():
        return None
    connection = lancedb.connect(path)
    if META not in _table_names(connection):
        return None
    row = connection.open_table(META).to_arrow().to_pylist()[0]
    return LibraryInfo(row["model_id"], row["fingerprint"], row["segment_seconds"], row["dim"], row["format"])


def _table_names(connection) -> set[str]:
    return set(connection.list_tables().tables)


# ---------------------------------------------------------------------------------------------- database
class LibraryDatabase:
    """An open library database: read with `open`, written through `open_for_writing` (one writer at a time)."""

    def __init__(self, path: Path, connection, info: LibraryInfo, lock=None):
        self.path, self.info, self._lock = path, info, lock
        self.segments = connection.open_table(SEGMENTS)
        self.tracks = connection.open_table(TRACKS)

    @classmethod
    def open(cls, path) -> LibraryDatabase:
        """An existing library, for reading (nothing is written)."""
        path = db_path(path)
        if not path.is_dir():
            raise ValueError(f"--db {str(path)!r} does not exist: build it first with `meralign index PATH... --db`")
        info = read_info(path)
        if info is None:
            raise ValueError(f"--db {str(path)!r} is not a meralign library: build it with `meralign index`")
        return cls(path, lancedb.connect(path), info)

    @classmethod
    def open_for_writing(cls, path, info: LibraryInfo) -> LibraryDatabase:
        """The library at `path` (created with `info` when new), locked, checked against `info`, and repaired."""
        path = check_db_location(path)
        if read_info(path) is None:
            _check_empty(lancedb.connect(path), path)  # before the lock file: a stranger's folder is left as it was
        lock = _acquire_lock(path)
        try:
            connection = lancedb.connect(path)
            if META not in _table_names(connection):
                _create(connection, path, info)
            db = cls(path, connection, read_info(path), lock)
            db.check_compatible(info)
            db.repair()
            return db
        except BaseException:
            lock.close()
            raise

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def __enter__(self) -> LibraryDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- checks
    def check_model(self, fingerprint: str, model_id: str) -> None:
        """Refuse a model whose vectors would not be comparable with the stored ones."""
        if fingerprint != self.info.fingerprint:
            raise ValueError(
                f"--db {str(self.path)!r} was built with model {self.info.model_id!r} (fingerprint "
                f"{self.info.fingerprint[:12]}), but --model {model_id!r} has fingerprint {fingerprint[:12]}: "
                "their vectors are not comparable. Use the library's model, or index into a new --db."
            )

    def check_compatible(self, info: LibraryInfo) -> None:
        self.check_model(info.fingerprint, info.model_id)
        if abs(info.segment_seconds - self.info.segment_seconds) > 1e-9:
            raise ValueError(
                f"--segment-seconds {info.segment_seconds:g} differs from the {self.info.segment_seconds:g} s "
                f"segments --db {str(self.path)!r} holds: leave it out, or index into a new --db"
            )

    # ------------------------------------------------------------------------------------------ reads
    def committed(self) -> dict[str, TrackRow]:
        """Every track row, by path."""
        table = self.tracks.search().select(["path", "content_hash", "size", "mtime_ns"]).limit(None).to_arrow()
        return {row["path"]: TrackRow(**row) for row in table.to_pylist()}

    def committed_hashes(self) -> set[str]:
        column = self.tracks.search().select(["content_hash"]).limit(None).to_arrow()["content_hash"]
        return set(pc.unique(column).to_pylist())

    def stored_track_vector(self, content_hash: str) -> tuple[np.ndarray, int]:
        """The vector and segment count of a committed content (for a copy of it at another path)."""
        (where,) = hash_filters([content_hash])
        table = self.tracks.search().where(where).select(["vector", "segments"]).limit(1).to_arrow()
        return vectors_of(table["vector"])[0], int(table["segments"][0].as_py())

    def counts(self) -> dict[str, int]:
        return {"tracks": self.tracks.count_rows(), "segments": self.segments.count_rows()}

    # ----------------------------------------------------------------------------------------- writes
    def add_track(self, source, content_hash: str, duration: float, embeds: np.ndarray, times, replaces=None):
        """Steps 1-3 of the module docstring for a newly embedded content at `source.path`."""
        embeds = np.asarray(embeds, dtype=np.float32)
        if embeds.ndim != 2 or embeds.shape[1] != self.info.dim or len(embeds) != len(times) or not len(times):
            raise ValueError(f"embeds must be [segments, {self.info.dim}] with one (start, end) per segment")
        starts, ends = zip(*times)
        rows = {
            "content_hash": [content_hash] * len(times),
            "segment": np.arange(len(times), dtype=np.int32),
            "start": np.asarray(starts, dtype=np.float64),
            "end": np.asarray(ends, dtype=np.float64),
            "vector": vector_array(embeds),
        }
        self.segments.add(pa.table(rows, schema=self.segments.schema))
        self._upsert_track(source, content_hash, duration, track_vector(embeds), len(times))
        self._release(replaces, content_hash)

    def add_copy(self, source, content_hash: str, duration: float, replaces=None) -> None:
        """A track row for a content already stored (a copy or a move): steps 2-3 only."""
        vector, n_segments = self.stored_track_vector(content_hash)
        self._upsert_track(source, content_hash, duration, vector, n_segments)
        self._release(replaces, content_hash)

    def _upsert_track(self, source, content_hash, duration, vector, n_segments) -> None:
        row = {
            "path": [source.path],
            "content_hash": [content_hash],
            "size": [source.size],
            "mtime_ns": [source.mtime_ns],
            "duration": [float(duration)],
            "segments": [n_segments],
            "vector": vector_array(vector[None, :]),
        }
        upsert = self.tracks.merge_insert("path").when_matched_update_all().when_not_matched_insert_all()
        upsert.execute(pa.table(row, schema=self.tracks.schema))

    def _release(self, old_hash: str | None, new_hash: str) -> None:
        """Step 3: drop the segments of the content a path held before, unless another track row uses it."""
        if old_hash is None or old_hash == new_hash:
            return
        (where,) = hash_filters([old_hash])
        if not self.tracks.count_rows(where):
            self.segments.delete(where)

    def repair(self) -> int:
        """Delete the segments that no track row uses (left by a kill mid-write); returns how many contents."""
        column = self.segments.search().select(["content_hash"]).limit(None).to_arrow()["content_hash"]
        orphans = set(pc.unique(column).to_pylist()) - self.committed_hashes()
        for where in hash_filters(orphans):
            self.segments.delete(where)
        return len(orphans)

    def compact(self, rows_before: int | None = None) -> None:
        """Merge the small fragments that one commit per track leaves (a fragmented table is slow to search),
        add new segments to the vector index, and build the index again (its partitions trained afresh) once
        the segments have more than doubled since `rows_before`."""
        for table in (self.segments, self.tracks):
            table.optimize(cleanup_older_than=CLEANUP_AFTER)
        rows = self.segments.count_rows()
        stale = rows_before is not None and rows > 2 * rows_before
        if rows >= VECTOR_INDEX_FROM and (stale or not self.segments.list_indices()):
            from lancedb.index import BTree, IvfFlat

            self.segments.create_index("vector", config=IvfFlat(distance_type="dot"), replace=True)
            self.tracks.create_index("content_hash", config=BTree(), replace=True)  # a search's hash -> path

    def refresh(self) -> None:
        """See what was committed since opening (a long-lived reader keeps LanceDB's in-memory index cache)."""
        info = read_info(self.path)
        if info is None:
            raise ValueError(f"--db {str(self.path)!r} is no longer a meralign library (it was removed)")
        for table in (self.segments, self.tracks):
            table.checkout_latest()
        self.info = info


def _check_empty(connection, path: Path) -> None:
    """A new library goes into an empty folder, or one a killed creation left (our tables, without rows)."""
    ours = {LOCK_NAME} | {f"{name}.lance" for name in (SEGMENTS, TRACKS, META)}
    strangers = sorted(entry for entry in os.listdir(path) if entry not in ours)
    names = _table_names(connection) & {SEGMENTS, TRACKS}
    if strangers or any(connection.open_table(name).count_rows() for name in names):
        shown = ", ".join(strangers[:3]) or "tables with rows but no library row"
        raise ValueError(f"--db {str(path)!r} is not empty and not a meralign library ({shown}): give a new folder")


def _create(connection, path: Path, info: LibraryInfo) -> None:
    """A new library: the two data tables, then the `library` row last (a half-created one is created again)."""
    _check_empty(connection, path)
    connection.create_table(SEGMENTS, schema=segment_schema(info.dim), mode="overwrite")
    connection.create_table(TRACKS, schema=track_schema(info.dim), mode="overwrite")
    row = {**asdict(info), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    connection.create_table(META, data=pa.Table.from_pylist([row], schema=META_SCHEMA), mode="overwrite")


def _acquire_lock(path: Path):
    """An exclusive lock on the database for this writer (released when the process ends, even by a kill)."""
    lock = open(path / LOCK_NAME, "a")  # held for the writer's lifetime
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ValueError(f"--db {str(path)!r} is being indexed by another process: wait for it to finish") from None
    return lock
