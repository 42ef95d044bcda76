"""Indexing a folder: what is stored, what is skipped and reported, what a rerun embeds, and bad input."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
import soundfile as sf
from conftest import CLIPS, SEGMENT_SECONDS, make_music_folder

from meralign.library.api import Library
from meralign.library.database import LibraryDatabase, vectors_of


def _tables(library):
    db = LibraryDatabase.open(library.path)
    return db.tracks.to_arrow().to_pylist(), db.segments.to_arrow().to_pylist()


def test_every_readable_file_is_stored_with_its_segments_and_track_vector(built_library, music, library_pipe):
    library, report = built_library
    expected = sorted(str(music / name) for name, *_ in CLIPS)
    assert sorted(report.indexed) == expected
    assert [p for p, _ in report.unreadable] == [str(music / "broken.wav")]
    assert "could not decode" in report.unreadable[0][1]
    assert report.ignored == [str(music / "albums" / "notes.txt")]
    tracks, segments = _tables(library)
    assert sorted(t["path"] for t in tracks) == expected
    for track in tracks:
        name, _, seconds, *_ = next(c for c in CLIPS if str(music / c[0]) == track["path"])
        assert track["duration"] == pytest.approx(seconds, abs=1e-3)  # from the file header
        own = sorted((s for s in segments if s["content_hash"] == track["content_hash"]), key=lambda s: s["segment"])
        assert len(own) == track["segments"] == len(library_pipe.recording_embeddings(track["path"], 1.0)[1])
        assert [(s["start"], s["end"]) for s in own][:2] == [(0.0, 1.0), (1.0, 2.0)]
        vectors = np.array([s["vector"] for s in own])
        mean = vectors.mean(axis=0)
        np.testing.assert_allclose(track["vector"], mean / np.linalg.norm(mean), atol=1e-6)


def test_stored_segment_vectors_are_the_pipelines(built_library, library_pipe):
    library, report = built_library
    db = LibraryDatabase.open(library.path)
    hashes = {t["path"]: t["content_hash"] for t in db.tracks.to_arrow().to_pylist()}
    segments = db.segments.to_arrow()
    before = library_pipe.audio_cache_size
    library_pipe.audio_cache_size = 0  # recompute: the tower, not the cache, must give the stored vectors
    try:
        for path in report.indexed:
            rows = segments.filter(pc.equal(segments["content_hash"], hashes[path]))
            embeds, _ = library_pipe.recording_embeddings(path, segment_seconds=SEGMENT_SECONDS)
            order = np.argsort(rows["segment"].to_numpy())
            np.testing.assert_allclose(vectors_of(rows["vector"])[order], embeds.numpy(), atol=1e-6)
    finally:
        library_pipe.audio_cache_size = before


def test_rerun_embeds_only_new_or_changed_content(library_pipe, tiny_model_dir, tmp_path, count_embeddings):
    music = make_music_folder(tmp_path / "music")
    library = Library.open(tmp_path / "db", tiny_model_dir, pipe=library_pipe, create=True)
    library.index([music], segment_seconds=SEGMENT_SECONDS, progress=False)
    calls = count_embeddings(library_pipe)
    again = library.index([music], progress=False)
    assert calls == [str(music / "broken.wav")]  # only the unreadable file is tried again
    assert len(again.unchanged) == len(CLIPS) and not again.indexed

    os.utime(music / "joyful.wav", ns=(1, 1))  # touched, same bytes: hashed, not embedded
    shutil.copy(music / "tense.ogg", music / "albums" / "tense copy.ogg")  # a copy: a new row, nothing embedded
    old = {t["path"]: t["content_hash"] for t in _tables(library)[0]}
    sf.write(music / "albums" / "calm.wav", np.zeros(24000, dtype=np.float32), 24000)  # new content
    calls.clear()
    report = library.index([music], progress=False)
    assert sorted(calls) == [str(music / "albums" / "calm.wav"), str(music / "broken.wav")]
    assert report.copies == [str(music / "albums" / "tense copy.ogg")]
    assert report.indexed == [str(music / "albums" / "calm.wav")]
    tracks, segments = _tables(library)
    new = {t["path"]: t for t in tracks}
    assert new[str(music / "albums" / "tense copy.ogg")]["content_hash"] == old[str(music / "tense.ogg")]
    assert new[str(music / "joyful.wav")]["mtime_ns"] == 1  # the quick check passes next time
    stored = {s["content_hash"] for s in segments}
    assert old[str(music / "albums" / "calm.wav")] not in stored  # the replaced content's segments are gone
    assert stored == {t["content_hash"] for t in tracks}
    assert (
        len(segments) == sum(t["segments"] for t in tracks) - new[str(music / "albums" / "tense copy.ogg")]["segments"]
    )  # the copy shares its segments


def test_progress_bar_shows_files_audio_hours_and_eta(library_pipe, tiny_model_dir, music, tmp_path, capsys):
    library = Library.open(tmp_path / "db", tiny_model_dir, pipe=library_pipe, create=True)
    library.index([music / "joyful.wav", music / "tense.ogg"], segment_seconds=SEGMENT_SECONDS, progress=True)
    bar = capsys.readouterr().err
    assert "audio h" in bar and "files 2/2" in bar and "100%" in bar
    assert "0.00/0.00 audio h" in bar and "<" in bar  # 5.5 s of audio, elapsed<remaining


def test_a_file_path_is_indexed_whatever_its_extension(library_pipe, tiny_model_dir, music, tmp_path):
    renamed = shutil.copy(music / "joyful.wav", tmp_path / "joyful.audio")
    not_audio = tmp_path / "readme.md"
    not_audio.write_text("# not audio")
    library = Library.open(tmp_path / "db", tiny_model_dir, pipe=library_pipe, create=True)
    report = library.index([renamed, not_audio], segment_seconds=SEGMENT_SECONDS, progress=False)
    assert report.indexed == [str(renamed)] and [p for p, _ in report.unreadable] == [str(not_audio)]


# ------------------------------------------------------------------------------------------ bad input
def test_a_missing_path_is_refused_before_anything_is_written(library_pipe, tiny_model_dir, music, tmp_path):
    library = Library.open(tmp_path / "db", tiny_model_dir, pipe=library_pipe, create=True)
    with pytest.raises(ValueError, match=r"PATH '.*nowhere' does not exist"):
        library.index([music, tmp_path / "nowhere"], segment_seconds=SEGMENT_SECONDS)
    assert not (tmp_path / "db" / "tracks.lance").exists()


def test_an_unwritable_database_location_is_refused(library_pipe, tiny_model_dir, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"--db '.*a file/db' is not a writable location"):
        Library.open(blocker / "db", tiny_model_dir, pipe=library_pipe, create=True)
    with pytest.raises(ValueError, match=r"--db '.*a file' is a file"):
        Library.open(blocker, tiny_model_dir, pipe=library_pipe, create=True)
    with pytest.raises(ValueError, match=r"--db '.*missing' does not exist"):
        Library.open(tmp_path / "missing", pipe=library_pipe)


def test_a_folder_that_is_not_a_library_is_left_alone(library_pipe, tiny_model_dir, music, tmp_path):
    shutil.copytree(music, tmp_path / "mine")
    library = Library.open(tmp_path / "mine", tiny_model_dir, pipe=library_pipe, create=True)
    with pytest.raises(ValueError, match=r"--db '.*mine' is not empty and not a meralign library \(albums"):
        library.index([music / "joyful.wav"], segment_seconds=SEGMENT_SECONDS)
    assert sorted(os.listdir(tmp_path / "mine")) == sorted(os.listdir(music))  # not even a lock file


def test_a_library_of_another_model_is_refused_and_kept(built_library, music, tiny_model_1s, tmp_path):
    from helpers import make_pipeline

    from modeling_meralign import build_processors

    library, _ = built_library
    before = _tables(library)
    config = tiny_model_1s.config  # the same weights, another segment length: another model for the library
    other = make_pipeline(tiny_model_1s, build_processors(config, config.text_name_or_path))
    with pytest.raises(ValueError) as info:
        Library.open(library.path, "org/another-model", pipe=other, create=True)
    message = str(info.value)
    assert library.model_id in message and "'org/another-model'" in message and "fingerprint" in message
    assert _tables(library) == before


def test_segment_seconds_cannot_change_and_must_cover_a_frame(built_library, library_pipe, music, tmp_path):
    library, _ = built_library
    with pytest.raises(ValueError, match=r"--segment-seconds 2 differs from the 1 s segments"):
        library.index([music / "joyful.wav"], segment_seconds=2.0)
    fresh = Library.open(tmp_path / "db", library.model_id, pipe=library_pipe, create=True)
    with pytest.raises(ValueError, match="--segment-seconds must cover one encoder frame"):
        fresh.index([music / "joyful.wav"], segment_seconds=0.001)
    with pytest.raises(ValueError, match="--segment-seconds must be a positive number"):
        fresh.index([music / "joyful.wav"], segment_seconds=-1)
