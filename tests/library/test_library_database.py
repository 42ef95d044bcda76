"""The database's guarantees: the model fingerprint, segments of no track ignored then repaired, one writer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import LABELS, SEGMENT_SECONDS

from meralign.library.api import Library
from meralign.library.database import LibraryDatabase, LibraryInfo, read_info
from meralign.library.fingerprint import model_fingerprint
from meralign.library.sources import SourceFile
from meralign.library.tagging import label_vectors


def test_fingerprint_is_the_audio_side_of_the_loaded_model(tiny_model, tiny_model_1s, library_pipe):
    from meralign.testing import build_tiny_model

    assert model_fingerprint(tiny_model) == model_fingerprint(library_pipe.model)  # saved and loaded: equal
    assert model_fingerprint(tiny_model) == model_fingerprint(tiny_model)
    assert model_fingerprint(tiny_model_1s) != model_fingerprint(tiny_model)  # another segment length
    other = build_tiny_model(seed=1)
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    with pytest.MonkeyPatch.context() as patch:  # the text tower does not touch stored vectors
        patch.setattr(other, "text_model", tiny_model.text_model)
        other.audio_model.load_state_dict(tiny_model.audio_model.state_dict())
        other.audio_head.load_state_dict(tiny_model.audio_head.state_dict())
        assert model_fingerprint(other) == model_fingerprint(tiny_model)
    other.quantize_for_cpu()  # int8 vectors differ from float32 ones
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    with pytest.raises(TypeError, match="model must be a MERAlignModel"):
        model_fingerprint(library_pipe)


def _orphan(db: LibraryDatabase, vector: np.ndarray, rows: int) -> str:
    """Segments written as step 1 of a track whose track row never came (a kill between the two commits)."""
    import pyarrow as pa

    from meralign.library.database import vector_array

    vectors = np.repeat(vector[None, :], rows, axis=0)
    content = "f" * 32
    data = {"content_hash": [content] * rows, "segment": np.arange(rows, dtype=np.int32)}
    data |= {"start": [0.0] * rows, "end": [1.0] * rows, "vector": vector_array(vectors)}
    db.segments.add(pa.table(data, schema=db.segments.schema))
    return content


def test_readers_ignore_segments_of_no_track_and_the_next_writer_deletes_them(built_library, library_pipe, tmp_path):
    library, report = built_library
    copy = Library(tmp_path / "db", library_pipe, library.model_id, library.fingerprint)
    shutil.copytree(library.path, copy.path)
    before = copy.tag(LABELS)
    db = LibraryDatabase.open(copy.path)
    query = label_vectors(library_pipe, ["joyful"])[0].numpy()
    orphan = _orphan(db, query, rows=200)  # the 200 best matches of "joyful", if they were not ignored
    assert copy.tag(LABELS) == before
    found = copy.search("joyful", top=50)
    assert sorted(r["path"] for r in found) == sorted(report.indexed) and all(r["cosine"] < 0.999 for r in found)
    with LibraryDatabase.open_for_writing(copy.path, db.info) as writer:  # opening for writing repairs
        assert orphan not in {r["content_hash"] for r in writer.segments.to_arrow().to_pylist()}
        assert writer.counts() == LibraryDatabase.open(library.path).counts()


def test_one_writer_at_a_time(built_library, tmp_path):
    library, _ = built_library
    shutil.copytree(library.path, tmp_path / "db")
    info = read_info(tmp_path / "db")
    with LibraryDatabase.open_for_writing(tmp_path / "db", info):
        with pytest.raises(ValueError, match="is being indexed by another process"):
            LibraryDatabase.open_for_writing(tmp_path / "db", info)
    LibraryDatabase.open_for_writing(tmp_path / "db", info).close()  # released


def test_a_creation_cut_short_is_created_again(tmp_path):
    import lancedb

    from meralign.library.database import SEGMENTS, TRACKS, segment_schema, track_schema

    connection = lancedb.connect(tmp_path / "db")  # the data tables exist, the library row was never written
    connection.create_table(SEGMENTS, schema=segment_schema(4))
    connection.create_table(TRACKS, schema=track_schema(4))
    assert read_info(tmp_path / "db") is None
    with pytest.raises(ValueError, match="is not a meralign library"):
        LibraryDatabase.open(tmp_path / "db")
    info = LibraryInfo("some/model", "0" * 32, SEGMENT_SECONDS, 4)
    with LibraryDatabase.open_for_writing(tmp_path / "db", info) as db:
        source = SourceFile(str(tmp_path / "a.wav"), 10, 1)
        db.add_track(source, "ab" * 16, 2.0, np.eye(2, 4, dtype=np.float32), [(0.0, 1.0), (1.0, 2.0)])
        assert db.counts() == {"tracks": 1, "segments": 2}
    assert read_info(tmp_path / "db") == info
    with pytest.raises(ValueError, match="content hash must be a lowercase hex digest"):
        LibraryDatabase.open(tmp_path / "db").stored_track_vector("x' OR '1'='1")


def test_a_large_library_is_searched_through_a_vector_index(built_library, library_pipe, music, tmp_path, monkeypatch):
    from meralign.library import database

    library, report = built_library
    monkeypatch.setattr(database, "VECTOR_INDEX_FROM", 10)  # the music folder's ~20 segments count as large
    indexed = Library.open(tmp_path / "db", library.model_id, pipe=library_pipe, create=True)
    indexed.index([music], segment_seconds=SEGMENT_SECONDS, progress=False)
    db = LibraryDatabase.open(indexed.path)
    assert [i.index_type for i in db.segments.list_indices()] == ["IvfFlat"]
    assert [i.index_type for i in db.tracks.list_indices()] == ["BTree"]
    for words in ("joyful", "melancholic but hopeful"):  # all partitions probed: the flat scan's answer
        found, expected = indexed.search(words, top=3), library.search(words, top=3)
        assert [(r["path"], r["start"]) for r in found] == [(r["path"], r["start"]) for r in expected]
        assert [r["cosine"] for r in found] == pytest.approx([r["cosine"] for r in expected], abs=1e-5)
