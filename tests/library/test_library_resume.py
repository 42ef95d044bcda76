"""A killed indexer: SIGKILL mid-run, then a rerun gives the database an uninterrupted run gives, embedding
each file once (a file being written when the kill came is embedded again, and nothing else)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import CLIPS, SEGMENT_SECONDS

from meralign.library.api import Library
from meralign.library.database import LibraryDatabase

KILL_AFTER = 3  # files committed before the kill
# The indexer in a child process: it logs each embedding, then either sleeps in the per-file callback once
# KILL_AFTER files are committed (the parent kills it there), or kills itself between a file's segments
# commit and its track row commit (the worst moment: segments of no track are left behind).
INDEXER = textwrap.dedent(
    """
    import os, signal, sys, time
    import torch
    from meralign.library.api import Library
    from meralign.library.database import LibraryDatabase

    model, db, music, log, mode, kill_after = sys.argv[1:]
    torch.set_num_threads(1)
    library = Library.open(db, model, create=True)
    embed = library.pipe.recording_embeddings

    def logged(path, **kwargs):
        with open(log, "a") as f:
            f.write(f"{path}\\n")
        return embed(path, **kwargs)

    library.pipe.recording_embeddings = logged
    settled = []  # committed files

    def on_file(path, status):
        if status != "unreadable":
            settled.append(path)
        if mode == "callback" and len(settled) == int(kill_after):
            print("ready", flush=True)
            time.sleep(600)

    upsert = LibraryDatabase._upsert_track

    def dying_upsert(self, *args):
        if mode == "mid-write" and len(settled) == int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)
        return upsert(self, *args)

    LibraryDatabase._upsert_track = dying_upsert
    library.index([music], segment_seconds=float(os.environ["SEGMENT_SECONDS"]), on_file=on_file, progress=False)
    """
)


def _snapshot(path):
    db = LibraryDatabase.open(path)
    tracks = sorted(db.tracks.to_arrow().to_pylist(), key=lambda t: t["path"])
    segments = sorted(db.segments.to_arrow().to_pylist(), key=lambda s: (s["content_hash"], s["segment"]))
    return tracks, segments


def _run_and_kill(tmp_path, tiny_model_dir, music, mode: str) -> list[str]:
    script, log = tmp_path / "indexer.py", tmp_path / "embedded.log"
    script.write_text(INDEXER)
    args = [str(tiny_model_dir), str(tmp_path / "db"), str(music), str(log), mode, str(KILL_AFTER)]
    env = {**os.environ, "SEGMENT_SECONDS": str(SEGMENT_SECONDS), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True, env=env)
    try:
        if mode == "callback":
            assert child.stdout.readline().strip() == "ready"
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return log.read_text().split()


@pytest.mark.parametrize("mode", ["callback", "mid-write"])
def test_rerun_after_a_kill_equals_an_uninterrupted_run(
    built_library, library_pipe, tiny_model_dir, music, tmp_path, mode, count_embeddings
):
    first = _run_and_kill(tmp_path, tiny_model_dir, music, mode)
    if mode == "mid-write":  # the file whose track row never came was embedded; its segments are stored
        tracks, segments = _snapshot(tmp_path / "db")
        assert len(tracks) == KILL_AFTER and len({s["content_hash"] for s in segments}) == KILL_AFTER + 1
    library = Library.open(tmp_path / "db", pipe=library_pipe, create=True)
    second = count_embeddings(library_pipe)
    started = time.perf_counter()
    report = library.index([music], progress=False)
    assert time.perf_counter() - started < 60
    assert len(report.unchanged) == KILL_AFTER
    readable = [p for p in first + second if not p.endswith("broken.wav")]
    repeated = sorted({p for p in readable if readable.count(p) > 1})
    assert sorted(set(readable)) == sorted(str(music / name) for name, *_ in CLIPS)
    assert repeated == ([] if mode == "callback" else [first[-1]])  # only the file cut off mid-write, once more

    expected_tracks, expected_segments = _snapshot(built_library[0].path)
    tracks, segments = _snapshot(tmp_path / "db")
    drop = ("vector", "mtime_ns")  # vectors compared below; mtime is the same file's
    assert [{k: v for k, v in t.items() if k not in drop} for t in tracks] == [
        {k: v for k, v in t.items() if k not in drop} for t in expected_tracks
    ]
    assert [{k: v for k, v in s.items() if k != "vector"} for s in segments] == [
        {k: v for k, v in s.items() if k != "vector"} for s in expected_segments
    ]
    np.testing.assert_allclose([s["vector"] for s in segments], [s["vector"] for s in expected_segments], atol=1e-5)
    np.testing.assert_allclose([t["vector"] for t in tracks], [t["vector"] for t in expected_tracks], atol=1e-5)
