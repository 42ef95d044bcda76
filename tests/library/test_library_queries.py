"""Tagging, searching and comparing a library: the pipeline's scores, the best moment, a file's duplicate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import LABELS, SEGMENT_SECONDS

from meralign.library.database import LibraryDatabase, vectors_of
from meralign.library.tagging import label_vectors


@pytest.fixture(scope="module")
def reference(library_pipe):
    """What the pipeline returns for a file. Its audio cache may hold the file's segments from indexing: that
    they equal what the tower computes is test_library_index's test_stored_segment_vectors_are_the_pipelines."""

    def run(path, **kwargs):
        return library_pipe(path, candidate_labels=LABELS, segment_seconds=SEGMENT_SECONDS, **kwargs)

    return run


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"multi_label": True},
        {"aggregation": "vote"},
        {"aggregation": "vote", "multi_label": True, "top_k": 2},
        {"aggregation": "mean", "top_k": 3},
    ],
    ids=["mean", "mean-multi", "vote", "vote-multi-top2", "mean-top3"],
)
def test_tags_equal_the_pipelines_scores(built_library, reference, options):
    library, report = built_library
    rows = library.tag(LABELS, **options)
    assert [r["path"] for r in rows] == sorted(report.indexed)
    for row in rows:
        expected = reference(row["path"], **options)
        assert [t["label"] for t in row["labels"]] == [e["label"] for e in expected], row["path"]
        np.testing.assert_allclose([t["score"] for t in row["labels"]], [e["score"] for e in expected], atol=1e-5)


def test_search_reports_each_tracks_best_segment(built_library, library_pipe):
    library, report = built_library
    words = "melancholic but hopeful"
    results = library.search(words, top=4)
    db = LibraryDatabase.open(library.path)
    segments = db.segments.to_arrow()
    cosine = vectors_of(segments["vector"]) @ label_vectors(library_pipe, [words])[0].numpy()
    best = {}  # brute force: each content's highest-cosine segment
    for row, c in zip(segments.to_pylist(), cosine):
        if row["content_hash"] not in best or c > best[row["content_hash"]][0]:
            best[row["content_hash"]] = (c, row["start"], row["end"])
    paths = {t["path"]: t["content_hash"] for t in db.tracks.to_arrow().to_pylist()}
    ranked = sorted(paths, key=lambda p: -best[paths[p]][0])[:4]
    assert [r["path"] for r in results] == ranked
    for r in results:
        c, start, end = best[paths[r["path"]]]
        assert r["cosine"] == pytest.approx(c, abs=1e-5) and (r["start"], r["end"]) == (start, end)
        assert 0.0 < r["score"] < 1.0 and r["end"] - r["start"] <= SEGMENT_SECONDS
    assert [r["cosine"] for r in results] == sorted((r["cosine"] for r in results), reverse=True)
    assert len(library.search(words, top=50)) == len(report.indexed)  # asks for more segments until all tracks


def test_similar_ranks_a_files_duplicate_first(built_library, music, tmp_path):
    library, _ = built_library
    for name in ("sad.flac", "albums/calm.wav"):
        copy = shutil.copy(music / name, tmp_path / "query.wav" if name.endswith("wav") else tmp_path / "q.flac")
        results = library.similar(copy, top=3)
        assert results[0]["path"] == str(music / name) and results[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
        assert len(results) == 3 and results[1]["cosine"] < results[0]["cosine"]
    samples, sr = sf.read(music / "joyful.wav", dtype="int16")  # the same samples, re-encoded losslessly
    sf.write(tmp_path / "joyful.flac", samples, sr)
    assert library.similar(tmp_path / "joyful.flac", top=1)[0]["path"] == str(music / "joyful.wav")


def test_bad_query_input_is_named(built_library, tmp_path):
    library, _ = built_library
    with pytest.raises(ValueError, match="--labels is empty"):
        library.tag([])
    with pytest.raises(TypeError, match="--labels must be a list of strings, got a single string"):
        library.tag("joyful, sad")
    with pytest.raises(ValueError, match="--labels contains the label 'sad' more than once"):
        library.tag(["sad", "sad"])
    with pytest.raises(ValueError, match="--aggregation must be one of"):
        library.tag(LABELS, aggregation="max")
    with pytest.raises(ValueError, match="--top-k must be an int >= 1"):
        library.tag(LABELS, top_k=0)
    with pytest.raises(ValueError, match="words is empty"):
        library.search("  ")
    with pytest.raises(ValueError, match="--top must be an int >= 1"):
        library.search("sad", top=0)
    with pytest.raises(ValueError, match=r"FILE '.*nothing.wav' does not exist"):
        library.similar(tmp_path / "nothing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="could not decode audio"):
        library.similar(tmp_path / "bad.wav")
