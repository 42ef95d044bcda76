"""Property-based tests (hypothesis) of everything the pipeline accepts from a caller.

Each property draws inputs, predicts from the documented rules whether the call must succeed, must fail with a
TypeError, must fail with a ValueError, or (only where the outcome depends on the model's float arithmetic) may
do either, and checks that the pipeline does exactly that:

- success: one entry per label (or top_k), scores finite and in [0, 1], sorted descending, softmax scores
  summing to 1, and (with return_segments) the timeline the half-segment rule gives for the resampled length;
- failure: ValueError/TypeError with a message naming what was wrong; any other exception fails the test;
- every example runs under a wall-clock alarm (EXAMPLE_LIMIT_S), so a hang fails instead of blocking CI.

Runs are derandomized (the same examples on every machine) and keep no example database. The pipeline runs a
micro audio tower beside the real MiniLM text tower: what is under test is input handling (decoding, resampling,
segmenting, label and argument checks), so the audio tower's cost is kept out of the way. Outcome counts per
property: `pytest tests/test_fuzz_pipeline.py --hypothesis-show-statistics`.
"""

from __future__ import annotations

import io
import math
import re
import signal
import struct
import time
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import make_pipeline
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

import audio_meralign
import pipeline_meralign
from configuration_meralign import MERAlignConfig
from meralign.testing import tiny_audio_config
from modeling_meralign import MERAlignModel, build_processors

SR = 24000
SEG = 1.0
LABELS = ["happy", "sad", "tense", "calm"]
EXAMPLE_LIMIT_S = 30.0  # per example; the slowest legitimate example here takes about 2 s
COMMON_RATES = [
    1,
    2,
    7,
    100,
    1000,
    8000,
    11025,
    16000,
    22050,
    24000,
    32000,
    44100,
    48000,
    88200,
    96000,
    176400,
    192000,
    352800,
    383999,
    384000,
]
# Float amplitudes: up to 1e6 the tower is scale-invariant and must score; from 1e20 its float32 arithmetic
# overflows and the pipeline may instead refuse the input (never return NaN).
SAFE_AMPLITUDES = [0.0, 1e-30, 1e-6, 0.5, 1.0, 8.0, 1e6]
EXTREME_AMPLITUDES = [1e20, 1e30, 3.4e38]  # beyond audio_meralign.MAX_SAMPLE_MAGNITUDE (1e9) whatever the draw


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# ------------------------------------------------------------------------------------------------- harness
class ExampleTimeout(BaseException):
    """Raised by the alarm. A BaseException, so no `except Exception` inside the code under test can swallow it."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_LIMIT_S):
    def on_alarm(signum, frame):
        raise ExampleTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    except ExampleTimeout:
        raise AssertionError(f"the example did not finish within {seconds} s (a hang)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # a C call that ignores the alarm until it returns is still caught here
    assert time.perf_counter() - start < seconds, f"the example took {time.perf_counter() - start:.1f} s"


def call(pipe, inputs, **kwargs):
    """('ok', result) or ('ValueError'/'TypeError', message); any other exception propagates and fails."""
    with time_limit():
        try:
            outcome, value = "ok", pipe(inputs, **kwargs)
        except (ValueError, TypeError) as err:
            assert str(err).strip(), f"{type(err).__name__} without a message"
            outcome, value = type(err).__name__, str(err)
    if currently_in_test_context():
        event(
            f"outcome: {outcome}" + ("" if outcome == "ok" else f" ({value[:38]}...)")
        )  # --hypothesis-show-statistics
    return outcome, value


def check_scores(result, labels: list[str], *, multi_label: bool = False, top_k: int | None = None) -> None:
    """The documented output: a ranking of `labels` (or its top_k), valid probabilities, best first."""
    if isinstance(result, dict):  # return_segments=True
        ranked = [{"label": lab, "score": s} for lab, s in zip(result["labels"], result["scores"], strict=True)]
    else:
        ranked = result
    assert isinstance(ranked, list) and all(isinstance(r, dict) and set(r) == {"label", "score"} for r in ranked)
    assert len(ranked) == min(top_k or len(labels), len(labels))
    names = [r["label"] for r in ranked]
    assert len(set(names)) == len(names) and set(names) <= set(labels)
    if top_k is None:
        assert set(names) == set(labels)
    values = [r["score"] for r in ranked]
    assert all(isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values), values
    assert values == sorted(values, reverse=True)
    if not multi_label and top_k is None:
        assert sum(values) == pytest.approx(1.0, abs=1e-5)


def expected_segments(n_in: int, rate: int, seg_seconds: float = SEG) -> list[tuple[float, float]]:
    """(start, end) of each segment by the documented rule, from the resampled length of n_in samples."""
    up, down = audio_meralign._resample_factors(rate, SR)
    total = -(-n_in * up // down)
    seg = int(round(seg_seconds * SR))
    full, rest = divmod(total, seg)
    out = [(i * seg / SR, (i + 1) * seg / SR) for i in range(full)]
    if rest and (full == 0 or rest >= seg / 2):
        out.append((full * seg / SR, total / SR))
    return out


def assert_timeline(segments: list[dict], expected: list[tuple[float, float]]) -> None:
    assert len(segments) == len(expected)
    got = [t for s in segments for t in (s["start"], s["end"])]
    assert got == pytest.approx([t for pair in expected for t in pair], abs=1e-9)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning OpenMP threads stall whenever one of them is
    descheduled, which turned 1 s examples into 10 s ones; one thread keeps example times steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def processors(tiny_model):
    return build_processors(tiny_model.config, tiny_model.config.text_name_or_path)


@pytest.fixture(scope="module")
def micro_model(tiny_model):
    """A MERAlign model with a micro audio tower (conv 7 x 16, hidden 32, one layer) and the real text tower
    (tiny_model's MiniLM weights): the properties test input handling, so the audio tower is kept cheap."""
    audio = tiny_audio_config(
        conv_dim=(16,) * 7,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    config = MERAlignConfig(
        audio_config=audio.to_dict(),
        text_config=tiny_model.config.text_config.to_dict(),
        feature_layers=[1],
        head_hidden_size=32,
    )
    torch.manual_seed(0)
    model = MERAlignModel(config)
    model.text_model.load_state_dict(tiny_model.text_model.state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def pipe(micro_model, processors):
    return make_pipeline(micro_model, processors)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    t = np.arange(SR) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


# ------------------------------------------------------------------------------ 1. arrays of any kind
@st.composite
def waveforms(draw):
    """An array input and the outcome the documented rules predict for it."""
    rate = draw(st.one_of(st.sampled_from(COMMON_RATES), st.integers(1, 384_000)))
    # weights by repetition: most draws are valid audio, every refusal class still comes up several times
    length = draw(st.sampled_from(["empty", "short", "short", "short", "long"]))
    seconds = draw({"empty": st.just(0.0), "short": st.floats(0.0, 3.0), "long": st.floats(3.0, 8.0)}[length])
    n = 0 if length == "empty" else min(max(1, int(round(seconds * rate))), 1_500_000)
    dtype = draw(st.sampled_from(["int16", "int32", "float32", "float32", "float64", "float64", "bool"]))
    layout = draw(
        st.sampled_from(
            ["mono", "mono", "mono", "channels_first", "channels_first", "channels_last", "channels_last", "3-D"]
        )
    )
    channels = draw(st.integers(1, 6))
    poison = draw(st.sampled_from([None] * 6 + ["nan", "inf", "-inf"]))
    amplitude = draw(st.sampled_from(SAFE_AMPLITUDES + EXTREME_AMPLITUDES))
    form = draw(st.sampled_from(["ndarray", "dict", "dict raw", "torch", "dict torch"]))
    seed = draw(st.integers(0, 2**16))

    rng = np.random.default_rng(seed)
    shape = {"mono": (n,), "channels_first": (channels, n), "channels_last": (n, channels), "3-D": (2, channels, n)}[
        layout
    ]
    if dtype == "bool":
        x = rng.random(shape) < 0.5
    elif dtype.startswith("int"):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        x = np.clip(rng.standard_normal(shape) * amplitude, -3.4e38, 3.4e38).astype(dtype)
        if poison and x.size:
            x.reshape(-1)[rng.integers(0, x.size)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[poison]
    if form in ("ndarray", "torch"):
        rate = SR  # a bare array is at the model's rate
    if form in ("torch", "dict torch"):
        x = torch.from_numpy(x)
    source = (
        x if form in ("ndarray", "torch") else {"raw" if form == "dict raw" else "array": x, "sampling_rate": rate}
    )

    # the mono length to_float_mono keeps: for 2-D input the longer axis holds the samples
    mono = n if layout == "mono" else (max(channels, n) if n else 0)
    # the outcomes the rules allow, each with the message a refusal must carry
    if dtype == "bool":
        expected = {"TypeError": r"has dtype bool: expected float16/32/64 or int8/16/32/64 PCM"}
    elif layout == "3-D":
        expected = {"ValueError": r"must be 1-D \(mono\) or 2-D \(channels\)"}
    elif mono == 0:
        expected = {"ValueError": r"audio is empty: it has no samples"}
    elif dtype.startswith("float") and poison:
        expected = {"ValueError": r"audio contains NaN or infinite samples"}
    elif dtype.startswith("float") and amplitude in EXTREME_AMPLITUDES:
        # refused from the samples (NaN/inf after a channel mean, or a magnitude beyond full scale): never scored
        expected = {
            "ValueError": r"NaN or infinite samples|samples of magnitude .* float audio is expected in \[-1, 1\]"
        }
    else:
        expected = {"ok": None}
    return source, rate, mono, expected


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # extreme amplitudes, then refused
@fuzz_settings(max_examples=150)
@given(case=waveforms(), multi_label=st.booleans(), return_segments=st.booleans())
def test_arrays_of_any_dtype_layout_rate_and_length(pipe, case, multi_label, return_segments):
    source, rate, mono, expected = case
    outcome, value = call(
        pipe,
        source,
        candidate_labels=LABELS,
        segment_seconds=SEG,
        multi_label=multi_label,
        return_segments=return_segments,
    )
    assert outcome in expected, (outcome, value, expected)
    if outcome != "ok":
        assert re.search(expected[outcome], value), value
        return
    check_scores(value, LABELS, multi_label=multi_label)
    if return_segments:
        assert_timeline(value["segments"], expected_segments(mono, rate))


@fuzz_settings(max_examples=10)
@given(
    rate=st.one_of(st.sampled_from([1, 2, 3, 50, 441, 4000]), st.integers(1, 4000)),
    seconds=st.floats(30.0, 180.0),
    seed=st.integers(0, 2**16),
)
def test_recordings_of_minutes_at_low_rates(pipe, rate, seconds, seed):
    """Minutes of audio (up to 3 min) at rates from 1 Hz: resampled and segmented within the time limit."""
    n = max(1, int(round(seconds * rate)))
    x = (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    outcome, value = call(
        pipe, {"array": x, "sampling_rate": rate}, candidate_labels=LABELS, segment_seconds=10.0, return_segments=True
    )
    assert outcome == "ok", value
    check_scores(value, LABELS)
    assert_timeline(value["segments"], expected_segments(n, rate, 10.0))


def test_odd_high_rates_resample_with_a_bounded_filter(pipe):
    """383999 Hz is coprime with 24 kHz: the exact ratio would need a 7.7 M-tap filter (~400 MB to design);
    the closest ratio with terms up to 32768 is used instead, off by a few parts per million."""
    for rate in (383_999, 999_983):
        up, down = audio_meralign._resample_factors(rate, SR)
        assert max(up, down) <= 1 << 15
        assert abs(Fraction(up, down) / Fraction(SR, rate) - 1) < 1 / (1 << 15)
    for rate in COMMON_RATES[:-2] + [384_000, 23_999, 32_768]:  # every common rate keeps its exact ratio
        assert Fraction(*audio_meralign._resample_factors(rate, SR)) == Fraction(SR, rate)
    x = (0.3 * np.random.default_rng(0).standard_normal(383_999 * 2)).astype(np.float32)
    outcome, value = call(pipe, {"array": x, "sampling_rate": 383_999}, candidate_labels=LABELS, segment_seconds=SEG)
    assert outcome == "ok", value
    check_scores(value, LABELS)


@pytest.mark.parametrize("peak", [1e20, 1e30, 1e37, 3.4e38])
def test_samples_far_beyond_full_scale_are_refused_not_scored(pipe, clip, peak):
    """Finite float32 samples far beyond full scale overflow the tower's norms (uniform scores from 1e20, NaN at
    3.4e38): a ValueError naming the magnitude, never scores."""
    loudest = (clip / np.abs(clip).max() * np.float32(peak)).astype(np.float32)
    assert np.isfinite(loudest).all()
    outcome, value = call(pipe, loudest, candidate_labels=LABELS, segment_seconds=SEG)
    assert outcome == "ValueError" and re.search(
        r"audio has samples of magnitude .*: float audio is expected in "
        r"\[-1, 1\], and samples above 1e\+09 overflow the model",
        value,
    ), value


def test_loud_but_representable_audio_is_scored_like_the_normalised_clip(pipe, clip):
    """Up to the bound, loudness changes nothing: MERT's first conv has no bias and a GroupNorm after it."""
    outcome, value = call(pipe, clip * np.float32(1e6), candidate_labels=LABELS, segment_seconds=SEG)
    assert outcome == "ok", value
    check_scores(value, LABELS)
    _, quiet = call(pipe, clip, candidate_labels=LABELS, segment_seconds=SEG)
    loud = {r["label"]: r["score"] for r in value}
    assert all(abs(loud[r["label"]] - r["score"]) < 1e-3 for r in quiet), (value, quiet)


def test_rates_declared_by_forged_file_headers(pipe):
    """A WAV header may declare any rate: above 1 MHz is refused when the file is opened (naming the file's rate,
    not the resampler's argument); an odd rate just under 1 MHz is scored quickly with the bounded filter."""
    noise = (np.random.default_rng(0).standard_normal(48_000) * 3000).astype("<i2").tobytes()
    outcome, value = call(
        pipe, wav_header(1, 4_000_000, 16, len(noise)) + noise, candidate_labels=LABELS, segment_seconds=SEG
    )
    assert outcome == "ValueError", value
    assert (
        "the sampling rate declared by audio from bytes must be a positive rate of at most 1000000 Hz, got 4000000"
        in value
    )
    with time_limit(5):
        outcome, value = call(
            pipe,
            wav_header(1, 999_983, 16, len(noise)) + noise,
            candidate_labels=LABELS,
            segment_seconds=SEG,
            return_segments=True,
        )
    assert outcome == "ok", value
    assert_timeline(value["segments"], expected_segments(48_000, 999_983))


# ----------------------------------------------------------------------------------- 2. label lists
LABEL_SAMPLES = [
    "happy",
    "sad",
    "😀 joyful",
    "{}",
    "{0}",
    "{x}",
    "%s",
    "../../etc/passwd",
    "C:\\Windows\\win.ini",
    "a,b",
    "ünïcödé",
    "日本語の歌",
    "\x00",
    "x" * 5000,
    " padded ",
    "\u200b zero width",
]
# long labels are truncated to 256 tokens (~85 ms each through MiniLM on one core): drawn now and then
good_label = st.sampled_from(["sample", "short", "short", "short", "long"]).flatmap(
    lambda kind: {
        "sample": st.sampled_from(LABEL_SAMPLES),
        "short": st.text(min_size=1, max_size=30).filter(str.strip),
        "long": st.text(min_size=300, max_size=3000).filter(str.strip),
    }[kind]
)
VALID_TEMPLATES = [None, "music that sounds {}", "{}", "{{literal}} {}", "{0}", "a {} song, {{really}}"]
INVALID_TEMPLATES = ["{}{}", "{x} {}", "{}{", "{{}}", "no slot", "{!r}", "{:>9}", "{0}{0}", "{0.upper}", "}{}"]


def expected_labels(labels) -> tuple[str, list[str] | None]:
    """The documented label rules: a string splits on commas; a list must be non-empty strings, no blanks, no
    repeats."""
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",") if part.strip()]
    if not labels:
        return "ValueError", None
    seen = set()
    for label in labels:
        if not isinstance(label, str):
            return "TypeError", None
        if not label.strip() or label in seen:
            return "ValueError", None
        seen.add(label)
    return "ok", list(labels)


def expected_template(template) -> bool:
    """The documented rule, checked by formatting rather than parsing: one positional slot that inserts the label
    unchanged (no second slot, named field, conversion, format spec or unmatched brace)."""
    if template is None:
        return True
    marker = "\ue000"
    try:
        filled, empty = template.format(marker), template.format("")
    except (IndexError, KeyError, ValueError, AttributeError):
        return False
    return filled.count(marker) == empty.count(marker) + 1 and len(filled) == len(empty) + 1


def label_kwargs(labels, template, multi_label, top_k) -> dict:
    kwargs = {"candidate_labels": labels, "multi_label": multi_label, "segment_seconds": SEG}
    if template is not None:
        kwargs["hypothesis_template"] = template
    if top_k is not None:
        kwargs["top_k"] = top_k
    return kwargs


@fuzz_settings(max_examples=100)
@given(
    labels=st.one_of(
        st.lists(good_label, min_size=1, max_size=8, unique=True),
        st.lists(st.sampled_from(LABEL_SAMPLES[:13]), min_size=1, max_size=6, unique=True).map(", ".join),
    ),
    template=st.sampled_from(VALID_TEMPLATES),
    multi_label=st.booleans(),
    top_k=st.one_of(st.none(), st.integers(1, 12)),
)
def test_any_valid_label_list_is_scored(pipe, clip, labels, template, multi_label, top_k):
    """Unicode, braces, path-like text, NUL, 5,000-character labels, comma strings: all scored, none refused."""
    outcome_labels, clean = expected_labels(labels)
    assert outcome_labels == "ok" and expected_template(template)  # the strategy draws only valid input
    outcome, value = call(pipe, clip, **label_kwargs(labels, template, multi_label, top_k))
    assert outcome == "ok", value
    check_scores(value, clean, multi_label=multi_label, top_k=top_k)


@st.composite
def label_lists(draw):
    """candidate_labels that may be anything: blanks, repeats, non-strings, empty lists, comma strings."""
    kind = draw(st.sampled_from(["list", "string", "mixed", "valid"]))
    if kind == "list":
        return draw(
            st.lists(
                st.one_of(st.sampled_from(LABEL_SAMPLES[:13] + ["", "  ", "\t\n"]), st.text(max_size=8)), max_size=8
            )
        )
    if kind == "string":
        return draw(
            st.one_of(
                st.text(max_size=40),
                st.lists(st.sampled_from(LABEL_SAMPLES[:12] + [" ", ""]), max_size=8).map(", ".join),
            )
        )
    if kind == "mixed":
        return draw(
            st.lists(
                st.one_of(
                    st.sampled_from(LABEL_SAMPLES[:3]),
                    st.integers(),
                    st.none(),
                    st.binary(max_size=4),
                    st.floats(),
                    st.lists(st.just("a"), max_size=1),
                ),
                min_size=1,
                max_size=6,
            )
        )
    return draw(st.lists(st.sampled_from(LABEL_SAMPLES[:6]), min_size=1, max_size=4, unique=True))


@fuzz_settings(max_examples=150)
@given(
    labels=label_lists(),
    template=st.one_of(
        st.sampled_from(VALID_TEMPLATES + INVALID_TEMPLATES),
        st.text(alphabet="{}0x !:r.", max_size=8),
        st.text(max_size=12),
        st.integers(),
        st.none(),
    ),
    multi_label=st.booleans(),
    top_k=st.one_of(st.none(), st.integers(-3, 12), st.booleans(), st.floats(-2, 5)),
)
@example(labels=[], template=None, multi_label=False, top_k=None)
@example(labels=["happy", "happy"], template=None, multi_label=False, top_k=None)
@example(labels=["happy", "sad"], template="{}{}", multi_label=False, top_k=None)
@example(labels=["happy", "sad"], template="{{}}", multi_label=False, top_k=None)
def test_any_label_list_template_and_top_k_is_scored_or_refused_by_name(
    pipe, clip, labels, template, multi_label, top_k
):
    """Every draw is scored or refused as the rules predict, and a refusal names the argument at fault."""
    outcome_labels, clean = expected_labels(labels)
    template_ok = isinstance(template, str) and expected_template(template) or template is None
    top_k_ok = top_k is None or (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1)
    outcome, value = call(pipe, clip, **label_kwargs(labels, template, multi_label, top_k))
    faults = {
        name
        for name, ok in (
            ("candidate_labels", outcome_labels == "ok"),
            ("hypothesis_template", template_ok),
            ("top_k", top_k_ok),
        )
        if not ok
    }
    if not faults:
        assert outcome == "ok", value
        check_scores(value, clean, multi_label=multi_label, top_k=top_k)
        return
    assert outcome != "ok", (faults, value)
    # the argument reported is one of those at fault, with the error class its rule gives
    reported = [name for name in faults if name in value]
    assert reported, (faults, value)
    allowed = {outcome_labels} if reported == ["candidate_labels"] else {"ValueError"}
    assert outcome in allowed, (outcome, value)


def test_a_thousand_labels_are_embedded_in_bounded_batches(micro_model, processors, clip, monkeypatch):
    fresh = make_pipeline(micro_model, processors)
    batches: list[int] = []
    hook = micro_model.text_model.register_forward_hook(
        lambda m, a, kw, out: batches.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    monkeypatch.setattr(pipeline_meralign, "LABEL_CACHE_SIZE", 1200)
    first = [f"emotion number {i}" for i in range(1000)]
    second = [f"feeling number {i}" for i in range(600)]
    try:
        with time_limit(60):
            result = fresh(clip, candidate_labels=first, segment_seconds=SEG)
        check_scores(result, first)
        assert sum(batches) == 1000 and max(batches) <= pipeline_meralign.LABEL_BATCH_SIZE
        fresh(clip, candidate_labels=second, segment_seconds=SEG)
        cache = fresh._label_cache
        assert len(cache) == 1200  # bounded: the oldest 400 of `first` were dropped, the newest 600 kept
        assert all(((fresh.model.config.hypothesis_template,), label) in cache for label in second + first[400:])
        assert not any(((fresh.model.config.hypothesis_template,), label) in cache for label in first[:400])
        before = len(batches)
        again = fresh(clip, candidate_labels=first[400:][::-1], segment_seconds=SEG, top_k=5)
        assert len(batches) == before and len(again) == 5  # all 600 served from the cache
    finally:
        hook.remove()


# ---------------------------------------------------------------------------------- 3. bytes and paths
def encode(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes | None:
    buffer = io.BytesIO()
    try:
        sf.write(buffer, x, rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError):  # an encoder libsndfile was built without
        return None
    return buffer.getvalue()


def _valid_files() -> dict[str, bytes]:
    x = (0.3 * np.sin(np.arange(12000) / 7)).astype(np.float32)
    specs = {
        "wav": ("WAV", "PCM_16", 16000),
        "wav_float": ("WAV", "FLOAT", 44100),
        "flac": ("FLAC", "PCM_16", 8000),
        "aiff": ("AIFF", "PCM_16", 22050),
        "ogg": ("OGG", "VORBIS", 16000),
        "opus": ("OGG", "OPUS", 48000),
        "mp3": ("MP3", "MPEG_LAYER_III", 16000),
    }
    files = {name: encode(x, rate, fmt, subtype) for name, (fmt, subtype, rate) in specs.items()}
    return {name: data for name, data in files.items() if data}


VALID_FILES = _valid_files()


def wav_header(channels: int, rate: int, bits: int, data_size: int, fmt_tag: int = 1) -> bytes:
    block = (channels * max(bits // 8, 1)) & 0xFFFF  # header fields wrap like a careless writer's would
    fmt = struct.pack("<HHIIHH", fmt_tag, channels & 0xFFFF, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


@st.composite
def file_bytes(draw):
    """(bytes, must_decode): random bytes, forged WAV headers, and valid files with random damage."""
    kind = draw(st.sampled_from(["random", "forged wav", "damaged", "damaged", "intact"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=4096)), False
    if kind == "forged wav":
        header = wav_header(
            draw(st.integers(0, 70000)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([0, 1, 8, 16, 24, 32, 64, 13])),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([1, 3, 0, 2, 0xFFFE])),
        )
        return header + draw(st.binary(max_size=2048)), False
    name = draw(st.sampled_from(sorted(VALID_FILES)))
    data = bytearray(VALID_FILES[name])
    if kind == "intact":
        return bytes(data), True
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "splice"]))
        position = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[position] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: max(position, 1)]
        else:
            data[position : position + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data), False


@fuzz_settings(max_examples=200)
@given(case=file_bytes(), form=st.sampled_from(["bytes", "path", "dict bytes", "bytearray"]))
def test_random_bytes_as_a_file(pipe, tmp_path_factory, case, form):
    data, must_decode = case
    if form == "path":
        path = tmp_path_factory.mktemp("fuzz") / "upload.bin"
        path.write_bytes(data)
        source = str(path)
    else:
        source = (
            {"bytes": data, "path": None}
            if form == "dict bytes"
            else (bytearray(data) if form == "bytearray" else data)
        )
    outcome, value = call(pipe, source, candidate_labels=LABELS, segment_seconds=SEG)
    assert outcome in ({"ok"} if must_decode else {"ok", "ValueError"}), (outcome, value)
    if outcome == "ok":
        check_scores(value, LABELS)
    else:
        assert re.search(DECODE_REFUSALS, value), value


# what a file that is not (valid) audio is told
DECODE_REFUSALS = (
    r"could not decode audio .*(corrupt file or unsupported format|truncated or corrupt)|audio is empty"
    r"|audio bytes are empty|sampling rate declared by audio .* must be a positive rate|NaN or infinite"
    r"|samples of magnitude .* float audio is expected in \[-1, 1\]"  # a damaged float WAV's garbage samples
)


@fuzz_settings(max_examples=60)
@given(
    path=st.one_of(
        st.text(max_size=60),
        st.sampled_from(
            [
                "",
                ".",
                "/",
                "/etc/passwd",
                "/dev/zero",
                "/dev/urandom",
                "/proc/self/environ",
                "/proc/self/mem",
                "~/.bashrc",
                "../../../etc/passwd",
                "file:///etc/passwd",
                "http://127.0.0.1:1/x.wav",
                "s3://bucket/key.wav",
                "\x00",
                "C:\\x.wav",
            ]
        ),
    ),
    as_path=st.booleans(),
)
def test_strings_as_inputs_are_paths_or_urls_and_fail_cleanly(pipe, path, as_path):
    """A string is a path or a URL. A path that is not an audio file (a folder, a device, /etc/passwd) and a URL
    without allow_urls are ValueErrors: no crash, no hang on a device file, no network access, and nothing of
    the file's content in the message."""
    source = Path(path) if as_path and path and "\x00" not in path else path
    outcome, value = call(pipe, source, candidate_labels=LABELS, segment_seconds=SEG)
    assert outcome == "ValueError", (outcome, value)
    assert "audio" in value and "root:" not in value, value
