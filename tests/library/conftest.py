"""Fixtures of the music-library tests: a folder of music, the tiny model's pipeline, and a library built once.

The folder mixes synthetic music (render_clip) in several formats and rates with an unreadable .wav, a text
file, and a subfolder. Segments are 1 s, so each clip has a few segments and the tiny model stays fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SEGMENT_SECONDS = 1.0
LABELS = ["joyful", "sad", "tense", "calm", "angry, aggressive"]
# (file, emotions, seconds, sampling rate, channels, subtype): formats, rates and channel counts a library meets
CLIPS = [
    ("joyful.wav", ["joyful"], 3.0, 24000, 1, "PCM_16"),
    ("sad.flac", ["sad", "tender"], 4.2, 44100, 2, "PCM_16"),
    ("tense.ogg", ["tense"], 2.5, 22050, 1, "VORBIS"),
    ("albums/calm.wav", ["calm"], 3.6, 16000, 2, "FLOAT"),
    ("albums/angry.mp3", ["angry"], 3.0, 32000, 1, "MPEG_LAYER_III"),
    ("albums/deep/solemn.aiff", ["solemn"], 2.0, 48000, 1, "PCM_24"),
]


def write_clip(path: Path, emotions, seconds: float, sr: int, channels: int, subtype: str, seed: int = 0) -> Path:
    from meralign.data.synthetic.render import render_clip

    wave = render_clip(emotions, seed=seed, seconds=seconds, sampling_rate=sr)
    if channels == 2:  # a slightly different right channel, so the mono downmix is not one of them
        wave = np.stack([wave, 0.8 * np.roll(wave, 7)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sr, subtype=subtype)
    return path


def make_music_folder(root: Path) -> Path:
    for seed, (name, emotions, seconds, sr, channels, subtype) in enumerate(CLIPS):
        write_clip(root / name, emotions, seconds, sr, channels, subtype, seed=seed)
    (root / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEthis is not a wave file")
    (root / "albums" / "notes.txt").write_text("liner notes, not audio\n")
    return root


@pytest.fixture(scope="session")
def music(tmp_path_factory) -> Path:
    """The folder of music (do not modify: copy what a test changes)."""
    return make_music_folder(tmp_path_factory.mktemp("music"))


@pytest.fixture(scope="session")
def library_pipe(tiny_model_dir):
    """The tiny model's pipeline, loaded from its folder as `meralign --model` loads it."""
    from meralign.library.model import load_pipeline

    return load_pipeline(str(tiny_model_dir))


@pytest.fixture(scope="session")
def built_library(library_pipe, tiny_model_dir, music, tmp_path_factory):
    """(library, report) of `music` indexed once without interruption (do not index into it)."""
    from meralign.library.api import Library

    library = Library.open(tmp_path_factory.mktemp("built") / "db", tiny_model_dir, pipe=library_pipe, create=True)
    report = library.index([music], segment_seconds=SEGMENT_SECONDS, progress=False)
    return library, report


@pytest.fixture
def count_embeddings(monkeypatch):
    """Counts the pipeline's recording_embeddings calls per path: `calls = count_embeddings(pipe)`."""

    def patch(pipe) -> list[str]:
        calls: list[str] = []
        original = pipe.recording_embeddings

        def counting(inputs, *args, **kwargs):
            calls.append(str(inputs))
            return original(inputs, *args, **kwargs)

        monkeypatch.setattr(pipe, "recording_embeddings", counting)
        return calls

    return patch
