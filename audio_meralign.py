"""Audio input for MERAlign: decoding without ffmpeg, polyphase resampling, streaming segmentation.

Part of the model's remote code (copied next to the pipeline): imports numpy at top level; soundfile
and scipy are imported inside `try` blocks and reported clearly when missing. Files are read block by
block and resampled per segment, so memory does not grow with the duration of a recording.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://")
# Integer PCM is scaled to [-1, 1) by its full-scale value.
_INT_SCALE = {
    np.dtype(np.int8): 2.0**7,
    np.dtype(np.int16): 2.0**15,
    np.dtype(np.int32): 2.0**31,
    np.dtype(np.int64): 2.0**63,
}
_MAX_SAMPLING_RATE = 1_000_000
# resample_poly designs a FIR of 20 * max(up, down) + 1 taps. An odd rate coprime with the target (383999 Hz,
# or any rate in a forged file header) would need up to 20 M taps: ~1 GB and seconds just to design it. Ratios
# whose reduced terms exceed this bound are replaced by the closest ratio within it (a time-scale error below
# 1/32768); every common rate, and every rate up to 32768 Hz, keeps its exact ratio.
_MAX_RATIO_TERM = 1 << 15
# Sample magnitudes above this are refused (see check_samples): 1e9 is 30,000 times int16 full scale.
MAX_SAMPLE_MAGNITUDE = 1e9


def _soundfile():
    try:
        import soundfile
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError("decoding audio files needs the `soundfile` package (pip install soundfile)") from err
    return soundfile


def check_sampling_rate(sampling_rate, argument: str = "sampling_rate") -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        if isinstance(sampling_rate, float) and sampling_rate.is_integer():
            sampling_rate = int(sampling_rate)
        else:
            raise TypeError(f"{argument} must be an int (Hz), got {sampling_rate!r}")
    if not 0 < sampling_rate <= _MAX_SAMPLING_RATE:
        raise ValueError(f"{argument} must be a positive rate of at most {_MAX_SAMPLING_RATE} Hz, got {sampling_rate}")
    return int(sampling_rate)


def to_float_mono(array, argument: str = "audio") -> np.ndarray:
    """A float32 mono waveform from a numpy array or torch tensor: 1-D, or 2-D channels x samples
    (or samples x channels when the first axis is the longer one), integer PCM scaled to [-1, 1)."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch.Tensor without importing torch
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":  # numpy has no bfloat16; float32 holds it exactly
            array = array.float()
        array = array.numpy()
    if isinstance(array, (list, tuple)):
        try:
            array = np.asarray(array)
        except ValueError as err:  # ragged nesting: numpy's message does not say which argument
            raise ValueError(f"{argument} is a ragged nested list: expected equal-length channels ({err})") from None
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{argument} must be a numpy array, a torch tensor, a path, bytes or a dict; got {type(array).__name__}"
        )
    dtype = array.dtype
    if dtype in _INT_SCALE:
        array = array.astype(np.float32) / np.float32(_INT_SCALE[dtype])
    elif dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{argument} has dtype {dtype}: expected float16/32/64 or int8/16/32/64 PCM samples")
    if array.ndim == 2:
        if not array.size:  # no samples in any channel: reported as empty audio, not as NaN from an empty mean
            return np.zeros(0, dtype=np.float32)
        channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
        array = array.mean(axis=channel_axis, dtype=np.float32)
    elif array.ndim != 1:
        raise ValueError(f"{argument} must be 1-D (mono) or 2-D (channels), got shape {array.shape}")
    return array


def check_samples(samples: np.ndarray, argument: str = "audio") -> None:
    """Refuse what is not audio: NaN or infinite samples, and finite ones far beyond full scale.

    Float audio is expected in [-1, 1]. Far beyond it (above MAX_SAMPLE_MAGNITUDE) the squares in the tower's
    normalisation overflow float32 and the scores come out uniform, silently; refusing such input is the only
    honest answer. The bound leaves room for unnormalised float audio (int16 or int24 values as floats).
    """
    if not np.isfinite(samples).all():
        raise ValueError(f"{argument} contains NaN or infinite samples")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise ValueError(
            f"{argument} has samples of magnitude {peak:.3g}: float audio is expected in [-1, 1], and samples above "
            f"{MAX_SAMPLE_MAGNITUDE:.0e} overflow the model (scale the waveform to full scale first)"
        )


def _resample_factors(orig_sr: int, target_sr: int) -> tuple[int, int]:
    """(up, down) of the resampling ratio target/orig, terms bounded by _MAX_RATIO_TERM (see there)."""
    ratio = Fraction(target_sr, orig_sr)
    if max(ratio.numerator, ratio.denominator) > _MAX_RATIO_TERM:
        if ratio < 1:
            approx = ratio.limit_denominator(_MAX_RATIO_TERM)
        else:
            approx = 1 / (1 / ratio).limit_denominator(_MAX_RATIO_TERM)
        if approx and abs(approx / ratio - 1) < 1e-4:  # else (an extreme ratio) keep it exact
            ratio = approx
    return ratio.numerator, ratio.denominator


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly: an anti-aliasing FIR, exact rational ratio for every
    common rate; odd rates whose ratio has huge terms use the closest ratio with terms up to 32768)."""
    orig_sr = check_sampling_rate(orig_sr, "orig_sr")
    target_sr = check_sampling_rate(target_sr, "target_sr")
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    try:
        from scipy.signal import resample_poly
    except ImportError as err:  # pragma: no cover
        raise ImportError("resampling needs scipy (pip install scipy)") from err
    up, down = _resample_factors(orig_sr, target_sr)
    return resample_poly(samples, up, down).astype(np.float32)


# --------------------------------------------------------------------------------------------- sources
class _BlockReader:
    """Sequential float32 mono blocks from a decoded array or an open sound file."""

    def __init__(self, sampling_rate: int, total_frames: int | None, blocks: Iterator[np.ndarray], closer=None):
        self.sampling_rate = sampling_rate
        self.total_frames = total_frames
        self._blocks = blocks
        self._closer = closer

    def __iter__(self):
        return self._blocks

    def close(self):
        if self._closer is not None:
            self._closer()


def _array_blocks(samples: np.ndarray, block: int) -> Iterator[np.ndarray]:
    for start in range(0, len(samples), block):
        yield samples[start : start + block]


def _open_sound(source, name: str, block: int) -> _BlockReader:
    sf = _soundfile()
    try:
        handle = sf.SoundFile(source)
    except Exception as err:  # libsndfile reports format problems as LibsndfileError/RuntimeError
        raise ValueError(f"could not decode audio {name}: corrupt file or unsupported format ({err})") from None

    def blocks():
        try:
            while True:
                data = handle.read(block, dtype="float32", always_2d=True)
                if not len(data):
                    return
                yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"could not decode audio {name}: the file is truncated or corrupt ({err})") from None

    try:  # a forged header can declare any rate; refuse it here, before it reaches the resampler
        rate = check_sampling_rate(handle.samplerate, f"the sampling rate declared by audio {name}")
    except (TypeError, ValueError):
        handle.close()
        raise
    frames = handle.frames if handle.frames and handle.frames > 0 else None
    return _BlockReader(rate, frames, blocks(), handle.close)


def open_audio(
    source, sampling_rate: int | None = None, *, allow_urls: bool = False, block: int = 1 << 16
) -> _BlockReader:
    """Open any supported audio input for sequential reading.

    `source`: a path (str or os.PathLike), raw bytes of a file, a numpy array / torch tensor at
    `sampling_rate`, a dict `{"array" or "raw": ..., "sampling_rate": int}`, or a `datasets` audio
    dict `{"path": ..., "bytes": ...}`.
    """
    if isinstance(source, dict):
        return _open_dict(source, allow_urls=allow_urls, block=block)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ValueError("audio bytes are empty")
        return _open_sound(io.BytesIO(bytes(source)), "from bytes", block)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.lower().startswith(URL_PREFIXES):
            if not allow_urls:
                raise ValueError(
                    f"audio {path!r} is a URL: download it first and pass the local file (or opt in with "
                    "allow_urls=True)"
                )
            return _open_sound(io.BytesIO(_download(path)), repr(path), block)
        if not os.path.isfile(path):
            raise ValueError(f"audio file not found: {path!r}")
        return _open_sound(path, repr(path), block)
    if sampling_rate is None:
        raise ValueError("a raw array needs its sampling_rate: pass {'array': ..., 'sampling_rate': sr}")
    samples = to_float_mono(source)
    return _BlockReader(check_sampling_rate(sampling_rate), len(samples), _array_blocks(samples, block))


def _open_dict(source: dict, *, allow_urls: bool, block: int) -> _BlockReader:
    if "array" in source or "raw" in source:
        if "sampling_rate" not in source:
            raise ValueError("an audio dict with 'array' or 'raw' must also have 'sampling_rate'")
        array = source["array"] if "array" in source else source["raw"]
        samples = to_float_mono(array, "audio['array']")
        return _BlockReader(check_sampling_rate(source["sampling_rate"]), len(samples), _array_blocks(samples, block))
    if source.get("bytes"):
        return open_audio(source["bytes"], block=block)
    if source.get("path"):
        return open_audio(source["path"], allow_urls=allow_urls, block=block)
    raise ValueError(
        f"audio dict must have 'array'/'raw' with 'sampling_rate', or 'path'/'bytes'; got keys {sorted(source)}"
    )


def _download(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:  # only reached when the caller opted in
        return response.read()


# ---------------------------------------------------------------------------------------- segmenting
def receptive_field(audio_config) -> int:
    """Samples the conv front end needs to emit one frame (400 for MERT): a segment's real part is
    counted as at least this long, so even a very short clip yields a frame to pool."""
    field = 1
    for kernel, stride in reversed(list(zip(audio_config.conv_kernel, audio_config.conv_stride))):
        field = (field - 1) * stride + kernel
    return field


@dataclass(frozen=True)
class Segment:
    """One fixed-length segment at the model's rate. `valid` counts real (unpadded) samples."""

    index: int
    start: float
    end: float
    samples: np.ndarray
    valid: int


def iter_segments(
    source,
    target_sr: int,
    segment_seconds: float,
    *,
    sampling_rate: int | None = None,
    min_last_fraction: float = 0.5,
    allow_urls: bool = False,
) -> Iterator[Segment]:
    """Non-overlapping segments of `segment_seconds` at `target_sr`, streamed from `source`.

    The last partial segment is kept (zero-padded) when it is at least `min_last_fraction` long, or
    when it is the only one, so every non-empty input yields at least one segment. Resampling is done
    per segment on a window with enough context that the result equals resampling the whole file.
    """
    target_sr = check_sampling_rate(target_sr, "target_sr")
    if not (isinstance(segment_seconds, (int, float)) and math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ValueError(f"segment_seconds must be a positive number, got {segment_seconds!r}")
    reader = open_audio(source, sampling_rate, allow_urls=allow_urls)
    try:
        yield from _segments_from_reader(reader, target_sr, int(round(segment_seconds * target_sr)), min_last_fraction)
    finally:
        reader.close()


def _segments_from_reader(
    reader: _BlockReader, target_sr: int, seg: int, min_last_fraction: float
) -> Iterator[Segment]:
    up, down = _resample_factors(reader.sampling_rate, target_sr)
    # Output sample m of resample_poly(x[j*down:], up, down) is global output sample j*up + m, so windows
    # start on multiples of `down` source samples; `margin` blocks cover the FIR's half-length on each side.
    margin = 0 if up == down == 1 else math.ceil(10 * max(up, down) / (up * down)) + 2
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # source index of buffer[0]
    exhausted = False
    blocks = iter(reader)
    index = 0
    while True:
        t0 = index * seg
        j0 = max(0, t0 // up - margin)
        j1 = -(-(t0 + seg) // up) + margin
        need_end = j1 * down
        while not exhausted and buffer_start + len(buffer) < need_end:
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                check_samples(block)
                buffer = np.concatenate([buffer, block])
        total = buffer_start + len(buffer)
        total_out = -(-total * up // down)  # resample_poly's output length for the whole input
        if index == 0 and total == 0:
            raise ValueError("audio is empty: it has no samples")
        valid = min(seg, total_out - t0)
        if valid <= 0 or (index > 0 and valid < min_last_fraction * seg):
            return
        # drop what no later window needs, then resample this window
        keep_from = j0 * down
        buffer = buffer[keep_from - buffer_start :]
        buffer_start = keep_from
        window = buffer[: need_end - buffer_start]
        out = resample(window, reader.sampling_rate, target_sr) if (up, down) != (1, 1) else window
        offset = t0 - j0 * up
        piece = out[offset : offset + valid]
        samples = np.zeros(seg, dtype=np.float32)
        samples[: len(piece)] = piece
        yield Segment(index, t0 / target_sr, (t0 + valid) / target_sr, samples, int(len(piece)))
        index += 1


def load_audio(source, target_sr: int, *, sampling_rate: int | None = None, allow_urls: bool = False) -> np.ndarray:
    """The whole input as one float32 mono array at `target_sr` (for short clips; long files: iter_segments)."""
    reader = open_audio(source, sampling_rate, allow_urls=allow_urls)
    try:
        parts = list(reader)
    finally:
        reader.close()
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if not len(samples):
        raise ValueError("audio is empty: it has no samples")
    check_samples(samples)
    return resample(samples, reader.sampling_rate, target_sr)
