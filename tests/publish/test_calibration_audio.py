"""`train.py export --calibration_audio`: the audio files that calibrate the static int8 model."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from meralign.publish.export import calibration_waveforms
from meralign.testing import build_tiny_model


def test_calibration_waveforms_reads_files_and_folders_at_the_models_rate(tmp_path):
    config = build_tiny_model().config
    folder = tmp_path / "music"
    (folder / "sub").mkdir(parents=True)
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    sf.write(folder / "a.wav", tone, 8000)  # resampled to the model's rate
    sf.write(folder / "sub" / "b.flac", tone[:4000], 8000)
    (folder / "notes.txt").write_text("not audio")
    waves = calibration_waveforms([folder], config)
    rate = config.sampling_rate
    assert [len(w) for w in waves] == [rate, rate // 2]  # a.wav then sub/b.flac, the text file passed over
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
    assert len(calibration_waveforms([folder / "a.wav"], config, max_files=1)) == 1


def test_calibration_waveforms_errors_name_the_flag(tmp_path):
    config = build_tiny_model().config
    with pytest.raises(ValueError, match="--calibration_audio .*does not exist"):
        calibration_waveforms([tmp_path / "missing"], config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--calibration_audio: no audio files"):
        calibration_waveforms([tmp_path / "empty"], config)
