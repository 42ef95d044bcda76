"""audio_meralign: decoding, exact streamed polyphase resampling, segmenting, sample formats and layouts.

The reference for resampling is scipy's `resample_poly` over the whole signal: streaming segment by segment
must give the same samples bit for bit, whatever the rate, the length or where file blocks fall.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

import audio_meralign
from audio_meralign import (
    check_sampling_rate,
    iter_segments,
    load_audio,
    open_audio,
    resample,
    to_float_mono,
)

TARGET_SR = 24000


def noise(n: int, seed: int = 0, channels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return (0.3 * rng.standard_normal(shape)).astype(np.float32)


def whole_resample(x: np.ndarray, sr: int, target: int = TARGET_SR) -> np.ndarray:
    ratio = Fraction(target, sr)
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def kept_length(total_out: int, seg: int, min_last_fraction: float = 0.5) -> int:
    """Samples covered by the segments iter_segments should yield (its documented half-segment rule)."""
    full, rest = divmod(total_out, seg)
    if rest and (full == 0 or rest >= min_last_fraction * seg):
        return total_out
    return full * seg


def concat_valid(segments) -> np.ndarray:
    return np.concatenate([s.samples[: s.valid] for s in segments])


# ------------------------------------------------------------------ streamed resampling == whole-file resampling


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000])
@pytest.mark.parametrize("seconds,segment_seconds", [(3.3, 1.0), (2.07, 0.37)])
def test_streamed_segments_equal_whole_resample_poly(sr, seconds, segment_seconds):
    n = int(sr * seconds) + 7  # odd lengths, not a multiple of any resampling block
    x = noise(n, seed=sr)
    segments = list(iter_segments({"array": x, "sampling_rate": sr}, TARGET_SR, segment_seconds))
    ref = whole_resample(x, sr)
    seg = int(round(segment_seconds * TARGET_SR))
    streamed = concat_valid(segments)
    assert len(streamed) == kept_length(len(ref), seg)
    np.testing.assert_array_equal(streamed, ref[: len(streamed)])
    for i, s in enumerate(segments):
        assert s.index == i and len(s.samples) == seg and s.samples.dtype == np.float32
        assert s.start == pytest.approx(i * seg / TARGET_SR) and s.end == pytest.approx(
            (i * seg + s.valid) / TARGET_SR
        )
        assert not s.samples[s.valid :].any()  # padding is zeros


@pytest.mark.parametrize("sr,subtype", [(44100, "FLOAT"), (16000, "PCM_16"), (48000, "PCM_24"), (22050, "FLOAT")])
def test_streamed_file_blocks_equal_whole_resample_poly(tmp_path, sr, subtype):
    """From a file, samples arrive in blocks of 65536 that straddle segment windows: still exact."""
    x = noise(int(sr * 7.9) + 3, seed=1)
    path = tmp_path / f"a_{sr}.wav"
    sf.write(path, x, sr, subtype=subtype)
    decoded, _ = sf.read(path, dtype="float32")
    segments = list(iter_segments(path, TARGET_SR, 1.3))
    streamed = concat_valid(segments)
    ref = whole_resample(decoded, sr)
    assert len(streamed) == kept_length(len(ref), int(round(1.3 * TARGET_SR)))
    np.testing.assert_array_equal(streamed, ref[: len(streamed)])
    # load_audio (whole clip at once) is the same resampling
    np.testing.assert_array_equal(load_audio(path, TARGET_SR), ref)


def test_resample_is_resample_poly_and_identity_at_same_rate():
    x = noise(10001, seed=2)
    np.testing.assert_array_equal(resample(x, 44100, 24000), resample_poly(x, 80, 147).astype(np.float32))
    same = resample(x, 24000, 24000)
    np.testing.assert_array_equal(same, x)
    assert same.dtype == np.float32
    with pytest.raises(ValueError, match="orig_sr"):
        resample(x, 0, 24000)


# ---------------------------------------------------------------------------------------- segmenting rules


@pytest.mark.parametrize(
    "n,expected_valid",
    [
        (2 * TARGET_SR, [TARGET_SR, TARGET_SR]),  # exact multiple: no partial segment
        (2 * TARGET_SR + TARGET_SR // 2 - 1, [TARGET_SR, TARGET_SR]),  # tail just under half: dropped
        (2 * TARGET_SR + TARGET_SR // 2, [TARGET_SR, TARGET_SR, TARGET_SR // 2]),  # exactly half: kept
        (2 * TARGET_SR + 20000, [TARGET_SR, TARGET_SR, 20000]),
        (100, [100]),  # the only segment is kept however short
        (1, [1]),
    ],
)
def test_half_segment_rule_for_the_last_segment(n, expected_valid):
    x = noise(n, seed=3)
    segments = list(iter_segments(x, TARGET_SR, 1.0, sampling_rate=TARGET_SR))
    assert [s.valid for s in segments] == expected_valid
    assert [s.start for s in segments] == [float(i) for i in range(len(expected_valid))]
    assert segments[-1].end == pytest.approx((len(expected_valid) - 1) + expected_valid[-1] / TARGET_SR)
    np.testing.assert_array_equal(concat_valid(segments), x[: sum(expected_valid)])


def test_min_last_fraction_is_respected():
    x = noise(3 * TARGET_SR + 2400, seed=4)  # a 0.1 s tail
    count = lambda frac: len(list(iter_segments(x, TARGET_SR, 1.0, sampling_rate=TARGET_SR, min_last_fraction=frac)))
    assert count(0.5) == 3
    assert count(0.1) == 4
    assert count(0.0) == 4


def test_half_segment_rule_counts_resampled_length():
    """The rule applies to the length at the target rate: 44.1 kHz input of 2.5 s gives exactly half a segment."""
    x = noise(int(44100 * 2.5), seed=5)
    segments = list(iter_segments({"array": x, "sampling_rate": 44100}, TARGET_SR, 1.0))
    assert [s.valid for s in segments] == [TARGET_SR, TARGET_SR, TARGET_SR // 2]
    x = x[:-3]  # now the resampled tail is a hair under half a segment
    assert len(list(iter_segments({"array": x, "sampling_rate": 44100}, TARGET_SR, 1.0))) == 2


def test_iter_segments_streams_long_inputs_lazily():
    """The generator does not decode ahead: a NaN far into the input is only seen when reached."""
    x = noise(10 * TARGET_SR, seed=6)
    x[9 * TARGET_SR + 5] = np.nan
    segments = iter_segments(x, TARGET_SR, 1.0, sampling_rate=TARGET_SR)
    first = next(segments)
    assert first.valid == TARGET_SR
    with pytest.raises(ValueError, match="NaN or infinite"):
        list(segments)


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf"), "1"])
def test_iter_segments_rejects_bad_segment_seconds(seconds):
    with pytest.raises(ValueError, match="segment_seconds"):
        next(iter_segments(noise(100), TARGET_SR, seconds, sampling_rate=TARGET_SR))


# ---------------------------------------------------------------------------------------- sample formats


def test_int16_int32_int8_scaling():
    np.testing.assert_array_equal(
        to_float_mono(np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)),
        np.array([-1.0, -0.5, 0.0, 0.5, 32767 / 32768], dtype=np.float32),
    )
    np.testing.assert_array_equal(
        to_float_mono(np.array([-(2**31), 0, 2**30], dtype=np.int32)), np.array([-1.0, 0.0, 0.5], dtype=np.float32)
    )
    np.testing.assert_array_equal(
        to_float_mono(np.array([-128, 64], dtype=np.int8)), np.array([-1.0, 0.5], dtype=np.float32)
    )
    out = to_float_mono(np.array([0.25, -0.5], dtype=np.float64))
    assert out.dtype == np.float32 and out.tolist() == [0.25, -0.5]


@pytest.mark.parametrize("subtype,dtype", [("PCM_16", np.int16), ("PCM_32", np.int32)])
def test_int_pcm_array_matches_the_same_file(tmp_path, subtype, dtype):
    """An int PCM array and the file holding the same PCM decode to identical float samples."""
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    pcm = rng.integers(info.min, info.max, size=30011, dtype=dtype)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, TARGET_SR, subtype=subtype)
    from_file = load_audio(path, TARGET_SR)
    from_array = load_audio({"array": pcm, "sampling_rate": TARGET_SR}, TARGET_SR)
    np.testing.assert_array_equal(from_file, from_array)
    np.testing.assert_allclose(from_array, pcm.astype(np.float64) / -float(info.min), rtol=0, atol=1e-7)


def test_torch_tensors_including_bfloat16():
    x = noise(1000, seed=8)
    np.testing.assert_array_equal(to_float_mono(torch.from_numpy(x)), x)
    np.testing.assert_array_equal(to_float_mono(torch.from_numpy(x).requires_grad_()), x)
    bf = torch.from_numpy(x).bfloat16()
    np.testing.assert_array_equal(to_float_mono(bf), bf.float().numpy())


@pytest.mark.parametrize(
    "array,exc,match",
    [
        (np.zeros(10, dtype=np.complex64), TypeError, "dtype complex64"),
        (np.zeros(10, dtype=bool), TypeError, "dtype bool"),
        (np.array([0.1, "a"], dtype=object), TypeError, "dtype object"),
        (np.array(["a", "b"]), TypeError, "dtype <U1"),
        (np.zeros(10, dtype=np.uint8), TypeError, "dtype uint8"),
        (np.zeros((2, 2, 10), dtype=np.float32), ValueError, r"1-D \(mono\) or 2-D"),
        (np.array(0.5, dtype=np.float32), ValueError, r"shape \(\)"),
        (np.float32(0.5), TypeError, "got float32"),
        ([[0.1, 0.2], [0.3]], ValueError, "ragged"),
        ("not an array", TypeError, "must be a numpy array"),
        (None, TypeError, "got NoneType"),
    ],
)
def test_to_float_mono_rejects_bad_arrays(array, exc, match):
    with pytest.raises(exc, match=match):
        to_float_mono(array)


# ---------------------------------------------------------------------------------------- channel layouts


def test_channels_first_and_channels_last_are_downmixed():
    stereo = noise(5000, seed=9, channels=2)  # samples x channels
    expected = (stereo[:, 0] + stereo[:, 1]) / np.float32(2)
    np.testing.assert_allclose(to_float_mono(stereo), expected, rtol=0, atol=1e-7)  # channels last
    np.testing.assert_allclose(to_float_mono(stereo.T), expected, rtol=0, atol=1e-7)  # channels first
    np.testing.assert_allclose(to_float_mono(torch.from_numpy(stereo.T.copy())), expected, rtol=0, atol=1e-7)
    six = noise(5000, seed=10, channels=6)
    np.testing.assert_allclose(to_float_mono(six), six.mean(axis=1), rtol=0, atol=1e-7)
    # one-channel 2-D arrays in either layout are just the channel
    np.testing.assert_array_equal(to_float_mono(stereo[:, :1]), stereo[:, 0])
    np.testing.assert_array_equal(to_float_mono(stereo[:, :1].T), stereo[:, 0])


def test_empty_2d_array_is_reported_as_empty_audio():
    assert to_float_mono(np.zeros((2, 0), dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="audio is empty"):
        next(iter_segments(np.zeros((2, 0), dtype=np.float32), TARGET_SR, 1.0, sampling_rate=TARGET_SR))


def test_stereo_file_is_downmixed_like_the_array(tmp_path):
    stereo = noise(30000, seed=11, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 48000, subtype="FLOAT")
    from_file = load_audio(path, TARGET_SR)
    from_array = load_audio({"array": stereo.T, "sampling_rate": 48000}, TARGET_SR)
    np.testing.assert_array_equal(from_file, from_array)
    np.testing.assert_array_equal(from_file, whole_resample(stereo.mean(axis=1, dtype=np.float32), 48000))


# ------------------------------------------------------------------------------------------- dict forms


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    x = noise(20011, seed=12)
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    return path, x


def test_dict_forms_agree(wav_file):
    path, x = wav_file
    ref = whole_resample(x, 16000)
    raw = path.read_bytes()
    forms = {
        "array": {"array": x, "sampling_rate": 16000},
        "raw": {"raw": x, "sampling_rate": 16000},
        "float sampling_rate": {"array": x, "sampling_rate": 16000.0},
        "numpy int sampling_rate": {"array": x, "sampling_rate": np.int64(16000)},
        "path": {"path": str(path)},
        "pathlike": {"path": path},
        "bytes": {"bytes": raw},
        "datasets undecoded": {"path": None, "bytes": raw},
        "datasets decoded": {"path": "ignored.wav", "array": x, "sampling_rate": 16000},
        "plain bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "str path": str(path),
    }
    for name, source in forms.items():
        np.testing.assert_array_equal(load_audio(source, TARGET_SR), ref, err_msg=name)


@pytest.mark.parametrize(
    "source,exc,match",
    [
        ({"array": np.zeros(10, np.float32)}, ValueError, "must also have 'sampling_rate'"),
        ({"array": np.zeros(10, np.float32), "sampling_rate": 0}, ValueError, "sampling_rate must be a positive rate"),
        (
            {"array": np.zeros(10, np.float32), "sampling_rate": -16000},
            ValueError,
            "sampling_rate must be a positive rate",
        ),
        ({"array": np.zeros(10, np.float32), "sampling_rate": 16000.5}, TypeError, "sampling_rate must be an int"),
        ({"array": np.zeros(10, np.float32), "sampling_rate": "16000"}, TypeError, "sampling_rate must be an int"),
        ({"array": np.zeros(10, np.float32), "sampling_rate": True}, TypeError, "sampling_rate must be an int"),
        ({}, ValueError, "audio dict must have"),
        ({"path": None, "bytes": None}, ValueError, "audio dict must have"),
        (
            {"array": np.zeros(10, np.complex64), "sampling_rate": 16000},
            TypeError,
            r"audio\['array'\] has dtype complex64",
        ),
    ],
)
def test_bad_dicts(source, exc, match):
    with pytest.raises(exc, match=match):
        open_audio(source)


def test_check_sampling_rate():
    assert check_sampling_rate(44100) == 44100
    assert check_sampling_rate(44100.0) == 44100
    with pytest.raises(ValueError, match="at most"):
        check_sampling_rate(10**9)


# -------------------------------------------------------------------------------------- decode errors, URLs


def test_raw_array_needs_a_rate_and_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="needs its sampling_rate"):
        open_audio(noise(10))
    with pytest.raises(ValueError, match="audio bytes are empty"):
        open_audio(b"")
    with pytest.raises(ValueError, match="audio is empty"):
        load_audio({"array": np.zeros(0, np.float32), "sampling_rate": 16000}, TARGET_SR)


def test_missing_corrupt_and_unsupported_files(tmp_path, wav_file):
    with pytest.raises(ValueError, match="audio file not found"):
        open_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="audio file not found"):
        open_audio(tmp_path)  # a folder is not an audio file
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio", encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt file or unsupported format"):
        open_audio(text)
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match="corrupt file or unsupported format"):
        open_audio(png)
    # a FLAC stream cut in half fails while streaming, with a message that names the problem
    buffer = io.BytesIO()
    sf.write(buffer, noise(48000, seed=13), TARGET_SR, format="FLAC")
    half = tmp_path / "half.flac"
    half.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        list(iter_segments(half, TARGET_SR, 0.5))


def test_nan_in_a_later_file_block_is_found(tmp_path):
    x = noise(200000, seed=14)
    x[150000] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, x, TARGET_SR, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN or infinite"):
        list(iter_segments(path, TARGET_SR, 1.0))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(path, TARGET_SR)


@pytest.mark.parametrize("url", ["http://example.com/a.wav", "https://example.com/a.flac", "HTTPS://EXAMPLE.COM/X"])
def test_urls_are_refused_without_opt_in(url):
    with pytest.raises(ValueError, match="is a URL: download it first"):
        open_audio(url)
    with pytest.raises(ValueError, match="allow_urls=True"):
        open_audio({"path": url})


def test_urls_are_fetched_with_opt_in(monkeypatch, wav_file):
    """With allow_urls=True the bytes are downloaded (stubbed here: no network) and decoded."""
    path, x = wav_file
    fetched = []
    monkeypatch.setattr(audio_meralign, "_download", lambda url: fetched.append(url) or path.read_bytes())
    out = load_audio("https://example.com/clip.wav", TARGET_SR, allow_urls=True)
    assert fetched == ["https://example.com/clip.wav"]
    np.testing.assert_array_equal(out, whole_resample(x, 16000))


def test_segment_count_matches_duration_for_a_long_stream():
    """Three minutes at 44.1 kHz in 10 s segments: 18 segments with exact start and end times."""
    x = np.zeros(44100 * 180, dtype=np.float32)
    segments = list(iter_segments({"array": x, "sampling_rate": 44100}, TARGET_SR, 10.0))
    assert [(s.start, s.end) for s in segments] == [(10.0 * i, 10.0 * (i + 1)) for i in range(18)]
    assert all(s.valid == 10 * TARGET_SR for s in segments)
