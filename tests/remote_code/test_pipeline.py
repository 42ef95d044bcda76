"""Acceptance tests of the `zero-shot-music-emotion` pipeline (tiny random audio tower, real MiniLM text tower).

Short segments (1 s) keep the model cheap; the exact-equality checks compare every input form against the
same decoded samples, so the tolerance (1e-5) only absorbs batch composition, never decoding differences.
"""

from __future__ import annotations

import copy
import io
import json
import math
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import make_pipeline
from scipy.signal import resample_poly

import audio_meralign
from modeling_meralign import build_processors

TASK = "zero-shot-music-emotion"
SR = 24000
LABELS = ["happy", "sad", "angry", "calm", "tense"]
SEG = 1.0  # segment_seconds used throughout (the model's default is 10 s)
EXACT = 1e-5
GOOD = np.zeros(SR, dtype=np.float32)
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)  # a PNG signature and header chunk


# ------------------------------------------------------------------------------------------------ helpers


def music(sr: int, seconds: float, seed: int) -> np.ndarray:
    """A harmonic tone with a tremolo, band-limited far below 4 kHz so any rate >= 8 kHz represents it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    f0 = rng.uniform(110, 440)
    tone = sum(0.5**k * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 6)) for k in range(5))
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
    return (0.3 * tone * tremolo).astype(np.float32)


def quantized(x: np.ndarray) -> np.ndarray:
    """x on the int16 grid: PCM_16 files of it decode to exactly these float32 samples."""
    return (np.round(x * 32767).astype(np.int16).astype(np.float32) / 32768).astype(np.float32)


def scores(result) -> dict[str, float]:
    if isinstance(result, dict):
        return dict(zip(result["labels"], result["scores"]))
    return {r["label"]: r["score"] for r in result}


def assert_same_scores(a, b, tol: float = EXACT, what: str = ""):
    sa, sb = scores(a), scores(b)
    assert sa.keys() == sb.keys(), what
    worst = max(abs(sa[k] - sb[k]) for k in sa)
    assert worst <= tol, f"{what}: scores differ by {worst:.3g} > {tol}"


def assert_valid_ranking(result, labels=LABELS, softmax: bool = True):
    """Every label once, sorted by descending score, scores finite probabilities (summing to 1 for softmax)."""
    assert isinstance(result, list) and all(set(r) == {"label", "score"} for r in result)
    assert sorted(r["label"] for r in result) == sorted(labels)
    values = [r["score"] for r in result]
    assert all(isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)
    if softmax:
        assert sum(values) == pytest.approx(1.0, abs=1e-6)


def expected_timeline(n_samples: int, seg_seconds: float = SEG, sr: int = SR) -> list[tuple[float, float]]:
    """(start, end) of each segment by the documented rule: full segments, plus a tail of >= half a
    segment (or any tail when it is the only segment)."""
    seg = int(round(seg_seconds * sr))
    full, rest = divmod(n_samples, seg)
    out = [(i * seg / sr, (i + 1) * seg / sr) for i in range(full)]
    if rest and (full == 0 or rest >= seg / 2):
        out.append((full * seg / sr, n_samples / sr))
    return out


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def processors(tiny_model):
    return build_processors(tiny_model.config, tiny_model.config.text_name_or_path)


@pytest.fixture(scope="module")
def pipe(tiny_model, processors):
    return make_pipeline(tiny_model, processors)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """2.5 s at 24 kHz on the int16 grid: three 1 s segments, the last one half full."""
    return quantized(music(SR, 2.5, seed=0))


@pytest.fixture(scope="module")
def reference(pipe, clip):
    return pipe(clip, candidate_labels=LABELS, segment_seconds=SEG)


@pytest.fixture(scope="module")
def files(tmp_path_factory, clip) -> dict[str, Path]:
    """The clip in every container soundfile can write here."""
    folder = tmp_path_factory.mktemp("formats")
    specs = {
        "wav": ("WAV", "PCM_16"),
        "wav_float": ("WAV", "FLOAT"),
        "flac": ("FLAC", "PCM_16"),
        "aiff": ("AIFF", "PCM_16"),
        "ogg": ("OGG", "VORBIS"),
        "opus": ("OGG", "OPUS"),
        "mp3": ("MP3", "MPEG_LAYER_III"),
    }
    paths = {}
    for name, (fmt, subtype) in specs.items():
        if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
            continue
        ext = {"wav_float": "wav", "opus": "opus"}.get(name, name)
        path = folder / f"{name}.{ext}"
        try:
            sf.write(path, clip, SR, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError):  # libsndfile built without that encoder
            continue
        paths[name] = path
    return paths


# ------------------------------------------------------------------------------- 1. load in a fresh process


FRESH_PROCESS = """
import json
from transformers import pipeline

labels = {labels!r}
by_task = pipeline("zero-shot-music-emotion", model={model_dir!r}, trust_remote_code=True)
by_config = pipeline(model={model_dir!r}, trust_remote_code=True)
out = {{
    "by_task": by_task({wav!r}, candidate_labels=labels, segment_seconds={seg}, return_segments=True),
    "by_config": by_config({wav!r}, candidate_labels=labels, segment_seconds={seg}, return_segments=True),
    "top2": by_config({wav!r}, candidate_labels=", ".join(labels), segment_seconds={seg}, top_k=2),
    "task": by_config.task,
    "pipeline_class": type(by_config).__module__ + "." + type(by_config).__name__,
    "model_class": type(by_task.model).__module__ + "." + type(by_task.model).__name__,
}}
print("RESULT " + json.dumps(out))
"""


def test_fresh_process_load_matches_in_process(run_isolated, tiny_model_dir, files, pipe):
    """What a Hub user does: load the saved folder with remote code only, by task name and from config alone."""
    code = FRESH_PROCESS.format(labels=LABELS, model_dir=str(tiny_model_dir), wav=str(files["wav"]), seg=SEG)
    proc = run_isolated(code)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    # the classes came from the folder's remote code, not from this checkout
    assert out["pipeline_class"].startswith("transformers_modules.")
    assert out["pipeline_class"].endswith(".pipeline_meralign.ZeroShotMusicEmotionPipeline")
    assert out["model_class"].startswith("transformers_modules.") and out["model_class"].endswith(".MERAlignModel")
    assert out["task"] == TASK

    local = pipe(str(files["wav"]), candidate_labels=LABELS, segment_seconds=SEG, return_segments=True)
    for key in ("by_task", "by_config"):
        remote = out[key]
        assert remote["labels"] == local["labels"], key
        np.testing.assert_allclose(remote["scores"], local["scores"], rtol=0, atol=EXACT, err_msg=key)
        assert [(s["start"], s["end"]) for s in remote["segments"]] == [
            (s["start"], s["end"]) for s in local["segments"]
        ]
        for r, loc in zip(remote["segments"], local["segments"]):
            assert r["scores"].keys() == loc["scores"].keys()
            assert max(abs(r["scores"][k] - loc["scores"][k]) for k in LABELS) <= EXACT
    assert [r["label"] for r in out["top2"]] == local["labels"][:2]
    np.testing.assert_allclose([r["score"] for r in out["top2"]], local["scores"][:2], rtol=0, atol=EXACT)


# ---------------------------------------------------------------------------------- output format and order


def test_output_format_ordering_and_top_k(pipe, clip, reference):
    assert_valid_ranking(reference)
    assert len({round(r["score"], 4) for r in reference}) > 1  # the clip is not scored uniformly

    top2 = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, top_k=2)
    assert top2 == reference[:2]
    assert pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, top_k=50) == reference  # k > labels: all
    # a comma-separated string is the same label list
    assert_same_scores(pipe(clip, candidate_labels=" , ".join(LABELS), segment_seconds=SEG), reference, tol=0)
    # a list input returns a list of results, in input order
    other = music(SR, 1.7, seed=1)
    both = pipe([clip, other], candidate_labels=LABELS, segment_seconds=SEG)
    assert isinstance(both, list) and len(both) == 2
    assert_same_scores(both[0], reference)
    assert_same_scores(both[1], pipe(other, candidate_labels=LABELS, segment_seconds=SEG))
    # different audio, different scores: the equality checks in this file can fail
    assert max(abs(scores(both[0])[k] - scores(both[1])[k]) for k in LABELS) > 0.01


def test_return_segments_timeline(pipe, clip, reference):
    result = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, return_segments=True)
    assert set(result) == {"labels", "scores", "segments"}
    assert result["labels"] == [r["label"] for r in reference]
    np.testing.assert_allclose(result["scores"], [r["score"] for r in reference], rtol=0, atol=1e-12)
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    for segment in result["segments"]:
        assert set(segment) == {"start", "end", "scores"} and set(segment["scores"]) == set(LABELS)
        assert sum(segment["scores"].values()) == pytest.approx(1.0, abs=1e-6)
    # mean aggregation: the recording's score is the mean over the timeline
    mean = {k: np.mean([s["scores"][k] for s in result["segments"]]) for k in LABELS}
    assert max(abs(mean[k] - scores(reference)[k]) for k in LABELS) < 1e-9
    # top_k truncates the labels, not the timeline
    top1 = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, return_segments=True, top_k=1)
    assert top1["labels"] == result["labels"][:1] and len(top1["segments"]) == 3


def independent_scores(model, clip: np.ndarray, label_embeds: torch.Tensor, multi_label: bool) -> np.ndarray:
    """Per-segment scores computed without the pipeline: the model's audio embedding of each 1 s segment
    (zero-padded, masked), then the documented score formulas against the given label embeddings."""
    seg = int(SEG * SR)
    spans = expected_timeline(len(clip))
    batch = torch.zeros(len(spans), seg)
    mask = torch.zeros(len(spans), seg, dtype=torch.long)
    for i, (start, end) in enumerate(spans):
        piece = clip[int(round(start * SR)) : int(round(end * SR))]
        batch[i, : len(piece)] = torch.from_numpy(piece)
        mask[i, : len(piece)] = 1
    with torch.inference_mode():
        cosine = model.get_audio_features(batch, mask) @ label_embeds.T
        if multi_label:
            return (
                torch.sigmoid(model.config.multilabel_scale * cosine + model.config.multilabel_bias).double().numpy()
            )
        return (model.logit_scale.exp() * cosine).softmax(-1).double().numpy()


def test_scores_match_an_independent_computation(pipe, tiny_model, clip):
    """Labels embedded by sentence-transformers itself (through the template), audio by the model, scored by
    hand: the pipeline's per-segment scores, ranking and mean must agree."""
    from sentence_transformers import SentenceTransformer

    template = "music that sounds {}"
    text = SentenceTransformer(tiny_model.config.text_name_or_path, device="cpu")
    label_embeds = torch.from_numpy(text.encode([template.format(lab) for lab in LABELS], normalize_embeddings=True))
    for multi_label in (False, True):
        segment_scores = independent_scores(tiny_model, clip, label_embeds, multi_label)
        result = pipe(
            clip,
            candidate_labels=LABELS,
            segment_seconds=SEG,
            hypothesis_template=template,
            multi_label=multi_label,
            return_segments=True,
        )
        got = np.array([[s["scores"][k] for k in LABELS] for s in result["segments"]])
        np.testing.assert_allclose(got, segment_scores, rtol=0, atol=1e-4)
        expected = segment_scores.mean(axis=0)
        order = np.argsort(-expected)
        assert result["labels"] == [LABELS[i] for i in order]
        np.testing.assert_allclose(result["scores"], expected[order], rtol=0, atol=1e-4)
        if multi_label:  # independent sigmoids: no reason to sum to 1
            assert abs(sum(result["scores"]) - 1.0) > 1e-3


def test_multi_label_uses_the_calibration(tiny_model, processors, clip):
    """Multi-label scores follow sigmoid(scale * cos + bias) with the config's calibration, not constants."""
    recalibrated = copy.copy(tiny_model)  # shares every weight; only the config differs
    recalibrated.config = copy.deepcopy(tiny_model.config)
    scale, bias = tiny_model.config.multilabel_scale, tiny_model.config.multilabel_bias
    recalibrated.config.multilabel_scale, recalibrated.config.multilabel_bias = 2 * scale, bias - 1.0
    kwargs = dict(candidate_labels=LABELS, segment_seconds=SEG, multi_label=True, return_segments=True)
    first = make_pipeline(tiny_model, processors)(clip, **kwargs)
    second = make_pipeline(recalibrated, processors)(clip, **kwargs)
    for a, b in zip(first["segments"], second["segments"]):
        for label in LABELS:
            cosine = (math.log(a["scores"][label] / (1 - a["scores"][label])) - bias) / scale
            expected = 1 / (1 + math.exp(-(2 * scale * cosine + bias - 1.0)))
            assert b["scores"][label] == pytest.approx(expected, abs=1e-5)
            assert b["scores"][label] != pytest.approx(a["scores"][label], abs=1e-4)


def test_vote_aggregation(pipe):
    clip = quantized(music(SR, 6.0, seed=3))
    result = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, return_segments=True, aggregation="vote")
    rows = np.array([[s["scores"][k] for k in LABELS] for s in result["segments"]])
    winners = rows.argmax(axis=1)
    expected = {label: float(np.mean(winners == i)) for i, label in enumerate(LABELS)}
    assert scores(result) == pytest.approx(expected, abs=1e-12)
    assert sum(result["scores"]) == pytest.approx(1.0)
    assert result["scores"] == sorted(result["scores"], reverse=True)
    # with top_k=2 every segment votes for its two best labels (the paper's song-level majority vote)
    top2 = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, aggregation="vote", top_k=2)
    best_two = np.argsort(-rows, axis=1)[:, :2]
    votes = {label: float(np.mean((best_two == i).any(axis=1))) for i, label in enumerate(LABELS)}
    ranked = sorted(votes.values(), reverse=True)[:2]
    assert [r["score"] for r in top2] == pytest.approx(ranked, abs=1e-12)
    assert all(votes[r["label"]] == pytest.approx(r["score"]) for r in top2)


def test_hypothesis_template_defaults_to_the_config(pipe, clip, reference, tiny_model):
    assert tiny_model.config.hypothesis_template == "{}"
    explicit = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, hypothesis_template="{}")
    assert_same_scores(explicit, reference, tol=0)
    other = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, hypothesis_template="This song sounds {}.")
    assert max(abs(scores(other)[k] - scores(reference)[k]) for k in LABELS) > 1e-3


def test_label_embeddings_are_computed_once_per_template_and_label(tiny_model, processors, clip):
    fresh = make_pipeline(tiny_model, processors)  # its own, empty cache
    rows_embedded: list[int] = []  # batch size of every text-tower forward

    def count(module, args, kwargs, output):
        rows_embedded.append(kwargs["input_ids"].shape[0])

    hook = tiny_model.text_model.register_forward_hook(count, with_kwargs=True)
    try:
        first = fresh(clip, candidate_labels=LABELS, segment_seconds=SEG)
        assert rows_embedded == [len(LABELS)]
        # three more recordings, same labels in another order: nothing embedded again
        again = fresh([clip, clip[:30000], clip], candidate_labels=LABELS[::-1], segment_seconds=SEG)
        assert rows_embedded == [len(LABELS)]
        assert_same_scores(again[0], first)
        # only the new label is embedded; a new template embeds its labels once
        fresh(clip, candidate_labels=LABELS + ["nostalgic"], segment_seconds=SEG)
        assert rows_embedded == [len(LABELS), 1]
        fresh(clip, candidate_labels=LABELS[:2], hypothesis_template="a {} song", segment_seconds=SEG)
        fresh(clip, candidate_labels=LABELS[:2], hypothesis_template="a {} song", segment_seconds=SEG)
        assert rows_embedded == [len(LABELS), 1, 2]
    finally:
        hook.remove()
    # the cached embedding is the one the model computes for "a happy song"
    tokens = fresh.tokenizer(["a happy song"], return_tensors="pt")
    with torch.inference_mode():
        direct = tiny_model.get_text_features(**tokens)[0]
    torch.testing.assert_close(fresh._label_cache[(("a {} song",), "happy")], direct, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ 2. every input form agrees


LOSSLESS_FILES = ["wav", "wav_float", "flac", "aiff"]
LOSSY_FILES = ["ogg", "opus", "mp3"]


def input_forms(clip: np.ndarray, files: dict[str, Path]) -> dict:
    pcm16 = np.round(clip * 32768).astype(np.int16)
    wav_bytes = files["wav"].read_bytes()
    forms = {
        "path str": str(files["wav"]),
        "path Path": files["wav"],
        "bytes wav": wav_bytes,
        "bytes flac": files["flac"].read_bytes(),
        "ndarray float32": clip,
        "ndarray float64": clip.astype(np.float64),
        "ndarray int16": pcm16,
        "torch tensor": torch.from_numpy(clip.copy()),
        "dict array": {"array": clip, "sampling_rate": SR},
        "dict raw": {"raw": clip, "sampling_rate": SR},
        "dict path": {"path": str(files["flac"])},
        "dict bytes": {"bytes": wav_bytes, "path": None},
        "channels first": np.stack([clip, clip]),
        "channels last": np.stack([clip, clip], axis=1),
        "dict stereo torch": {"array": torch.from_numpy(np.stack([clip, clip])), "sampling_rate": SR},
    }
    forms.update({f"file {name}": files[name] for name in LOSSLESS_FILES})
    return forms


def test_every_input_form_gives_the_same_scores(pipe, clip, files, reference):
    for name in LOSSLESS_FILES:  # the files hold exactly the clip's samples, so 1e-5 is a fair bound
        np.testing.assert_array_equal(sf.read(files[name], dtype="float32")[0], clip, err_msg=name)
    forms = input_forms(clip, files)
    for name, source in forms.items():
        result = pipe(source, candidate_labels=LABELS, segment_seconds=SEG)
        assert_valid_ranking(result)
        assert_same_scores(result, reference, what=name)
    # all of them at once: a mixed list, batched across recordings, returns one result per item in order
    together = pipe(list(forms.values()), candidate_labels=LABELS, segment_seconds=SEG, batch_size=4)
    assert len(together) == len(forms)
    for name, result in zip(forms, together):
        assert_same_scores(result, reference, what=f"{name} in a list")


def test_stereo_channels_are_averaged(pipe, clip, tmp_path, reference):
    """Left and right differ; their mean is the mono clip (to float rounding)."""
    side = quantized(music(SR, 2.5, seed=9)) * np.float32(0.5)
    stereo = np.stack([clip + side, clip - side], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, SR, subtype="FLOAT")
    for name, source in {"file": path, "channels last": stereo, "channels first": stereo.T.copy()}.items():
        assert_same_scores(pipe(source, candidate_labels=LABELS, segment_seconds=SEG), reference, what=name)


def test_lossy_files_give_valid_output(pipe, files):
    for name in LOSSY_FILES:
        if name not in files:
            continue
        result = pipe(files[name], candidate_labels=LABELS, segment_seconds=SEG)
        assert_valid_ranking(result)
        timeline = pipe(files[name], candidate_labels=LABELS, segment_seconds=SEG, return_segments=True)["segments"]
        assert len(timeline) == 3 and timeline[0]["start"] == 0.0  # 2.5 s, whatever the codec's padding


def test_mp3_is_written_and_read_when_libsndfile_has_mpeg(files):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MPEG support: mp3 cannot be written for the test")
    assert "mp3" in files, "libsndfile lists MP3 but writing it failed"


def test_datasets_dataset_input(pipe, clip, files, reference):
    """An Audio column is read undecoded (datasets' decoder needs torchcodec/ffmpeg) and returns an iterator."""
    from datasets import Audio, Dataset

    by_path = Dataset.from_dict({"audio": [str(files["wav"]), str(files["flac"])], "id": [0, 1]}).cast_column(
        "audio", Audio()
    )
    by_bytes = Dataset.from_dict({"audio": [{"bytes": files["wav"].read_bytes(), "path": None}]}).cast_column(
        "audio",
        Audio(sampling_rate=16000),  # a declared rate is irrelevant: the pipeline resamples to 24 kHz itself
    )
    for dataset, n in ((by_path, 2), (by_bytes, 1)):
        out = pipe(dataset, candidate_labels=LABELS, segment_seconds=SEG)
        assert not isinstance(out, list)
        first = next(out)
        results = [first, *out]
        assert len(results) == n
        for result in results:
            assert_same_scores(result, reference, what="dataset")
    with pytest.raises(ValueError, match="no Audio column"):
        pipe(Dataset.from_dict({"x": [1, 2]}), candidate_labels=LABELS)


def test_generator_input_returns_an_iterator(pipe, clip, files, reference):
    other = music(SR, 1.2, seed=4)
    out = pipe((x for x in [clip, files["flac"], other]), candidate_labels=LABELS, segment_seconds=SEG)
    assert not isinstance(out, list)
    assert_same_scores(next(out), reference)  # next() first: iter() must not be needed before it
    assert iter(out) is out
    assert_same_scores(next(out), reference)
    assert_same_scores(next(out), pipe(other, candidate_labels=LABELS, segment_seconds=SEG))
    with pytest.raises(StopIteration):
        next(out)
    assert list(pipe((x for x in []), candidate_labels=LABELS)) == []


@pytest.mark.parametrize("rate", [44100, 16000])
def test_other_rates_are_resampled_with_resample_poly(pipe, rate):
    """The same music rendered at 44.1/16 kHz scores like its 24 kHz rendering, and what reaches the model
    is exactly scipy's resample_poly of the whole signal."""
    native = music(SR, 2.5, seed=5)
    other = music(rate, 2.5, seed=5)
    expected = pipe(native, candidate_labels=LABELS, segment_seconds=SEG)
    got = pipe({"array": other, "sampling_rate": rate}, candidate_labels=LABELS, segment_seconds=SEG)
    assert_valid_ranking(got)
    assert_same_scores(got, expected, tol=2e-3, what=f"{rate} Hz")

    items = list(pipe.preprocess({"array": other, "sampling_rate": rate}, segment_seconds=SEG))
    streamed = np.concatenate([item["input_values"][0, : item["valid"]].numpy() for item in items])
    ratio = Fraction(SR, rate)
    whole = resample_poly(other, ratio.numerator, ratio.denominator).astype(np.float32)
    assert len(streamed) == len(whole) == len(native)
    np.testing.assert_array_equal(streamed, whole)
    assert [(i["start"], i["end"]) for i in items] == expected_timeline(len(native))


def test_resampled_file_input(pipe, tmp_path):
    native = music(SR, 2.5, seed=6)
    stereo = np.stack([music(44100, 2.5, seed=6)] * 2, axis=1)
    path = tmp_path / "cd.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    expected = pipe(native, candidate_labels=LABELS, segment_seconds=SEG)
    assert_same_scores(
        pipe(path, candidate_labels=LABELS, segment_seconds=SEG), expected, tol=2e-3, what="44.1 kHz flac"
    )


# -------------------------------------------------------------------------------- 3. batching changes nothing


def test_batch_size_4_equals_batch_size_1(pipe):
    lengths = [0.3, 0.9, 1.4, 2.0, 2.7, 3.1, 0.05, 4.6]  # seconds: 1 to 5 segments, tails kept and dropped
    clips = [quantized(music(SR, s, seed=10 + i)) for i, s in enumerate(lengths)]
    runs = {
        bs: pipe(clips, candidate_labels=LABELS, segment_seconds=SEG, return_segments=True, batch_size=bs)
        for bs in (1, 4, 3)  # 3: batches straddle recordings and the last batch is partial
    }
    for i, clip in enumerate(clips):
        timeline = expected_timeline(len(clip))
        for bs, results in runs.items():
            result = results[i]
            # start/end survive unbatching as plain floats with the right values
            assert [(s["start"], s["end"]) for s in result["segments"]] == timeline, (bs, i)
            assert all(type(s["start"]) is float and type(s["end"]) is float for s in result["segments"])
            assert_same_scores(result, runs[1][i], what=f"clip {i}, batch_size={bs}")
            for a, b in zip(result["segments"], runs[1][i]["segments"]):
                assert max(abs(a["scores"][k] - b["scores"][k]) for k in LABELS) <= EXACT


# ------------------------------------------------------------------------------------- 4. a 20-minute file


def test_twenty_minute_file_is_streamed_in_bounded_memory(pipe, tmp_path):
    minutes, seg_seconds = 20, 10.0
    path = tmp_path / "long.wav"
    minute = np.sin(2 * np.pi * 220 * np.arange(60 * SR) / SR).astype(np.float32)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for i in range(minutes):  # written a minute at a time; loudness varies so segments differ
            f.write(minute * np.float32(0.1 + 0.04 * i))
    decoded_bytes = minutes * 60 * SR * 4  # float32 mono: 115.2 MB
    tracemalloc.start()
    try:
        result = pipe(str(path), candidate_labels=LABELS, segment_seconds=seg_seconds, return_segments=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    segments = result["segments"]
    assert len(segments) == 120
    assert [(s["start"], s["end"]) for s in segments] == [(10.0 * i, 10.0 * (i + 1)) for i in range(120)]
    assert all(sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-6) for s in segments)
    assert_valid_ranking([{"label": lab, "score": s} for lab, s in zip(result["labels"], result["scores"])])
    # a batch of 8 ten-second segments is 7.7 MB; the whole file decoded would be 115 MB
    assert peak < 25e6, f"traced peak {peak / 1e6:.1f} MB while scoring a file of {decoded_bytes / 1e6:.0f} MB decoded"


# ------------------------------------------------------------------------------------------- 5. bad input


def encoded(x: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, SR, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clip) -> dict[str, Path]:
    """Files that must be refused: text and a PNG under audio names, a FLAC cut mid-stream, a bare WAV header."""
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.wav"
    text.write_text("definitely not audio\n", encoding="utf-8")
    png = folder / "picture.png"
    png.write_bytes(PNG_BYTES)
    flac = encoded(np.tile(clip, 4), "FLAC")  # 10 s: the cut is reached after segments were already scored
    cut = folder / "cut.flac"
    cut.write_bytes(flac[: len(flac) // 2])
    header_only = folder / "header_only.wav"
    header_only.write_bytes(encoded(clip, "WAV")[:30])
    return {"text": text, "png": png, "cut": cut, "header_only": header_only, "missing": folder / "missing.wav"}


BAD_ARGUMENTS = [
    ({"candidate_labels": []}, ValueError, "candidate_labels is empty"),
    ({"candidate_labels": " , ,"}, ValueError, "candidate_labels is empty"),
    (
        {"candidate_labels": ["happy", "sad", "happy"]},
        ValueError,
        "candidate_labels contains the label 'happy' more than once",
    ),
    ({"candidate_labels": "happy, sad, happy"}, ValueError, "more than once"),
    ({"candidate_labels": ["happy", 3]}, TypeError, r"candidate_labels must contain only strings, got 3 \(int\)"),
    ({"candidate_labels": ["happy", None]}, TypeError, "candidate_labels must contain only strings"),
    ({"candidate_labels": ["happy", "  "]}, ValueError, "candidate_labels contains an empty label"),
    ({"candidate_labels": {"happy"}}, TypeError, "candidate_labels must be a list of strings"),
    ({}, ValueError, "candidate_labels is required"),
    ({"candidate_labels": LABELS, "top_k": 0}, ValueError, "top_k must be an int >= 1, got 0"),
    ({"candidate_labels": LABELS, "top_k": -2}, ValueError, "top_k must be an int >= 1"),
    ({"candidate_labels": LABELS, "top_k": 1.5}, ValueError, "top_k must be an int >= 1"),
    (
        {"candidate_labels": LABELS, "aggregation": "median"},
        ValueError,
        r"aggregation must be one of \('mean', 'vote'\), got 'median'",
    ),
    ({"candidate_labels": LABELS, "segment_seconds": 0}, ValueError, "segment_seconds must be a positive number"),
    (
        {"candidate_labels": LABELS, "segment_seconds": float("nan")},
        ValueError,
        "segment_seconds must be a positive number",
    ),
    (
        {"candidate_labels": LABELS, "segment_seconds": 0.001},
        ValueError,
        "segment_seconds must cover at least one encoder frame",
    ),
    (
        {"candidate_labels": LABELS, "hypothesis_template": "no slot"},
        ValueError,
        r"hypothesis_template must be a string containing '\{\}'",
    ),
    ({"candidate_labels": LABELS, "temperature": 2}, TypeError, "unexpected argument.*temperature"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments(pipe, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pipe(GOOD, **kwargs)


def bad_inputs(files: dict[str, Path]) -> dict[str, tuple]:
    """name -> (input, exception type, pattern its message must contain)."""
    x = np.zeros(SR, dtype=np.float32)
    nan, inf = x.copy(), x.copy()
    nan[100] = np.nan
    inf[-1] = -np.inf
    return {
        "empty array": (np.zeros(0, np.float32), ValueError, "audio is empty"),
        "empty stereo": (np.zeros((2, 0), np.float32), ValueError, "audio is empty"),
        "empty bytes": (b"", ValueError, "audio bytes are empty"),
        "empty list": ([], ValueError, "inputs is an empty list"),
        "nan": (nan, ValueError, "NaN or infinite"),
        "inf in dict": ({"array": inf, "sampling_rate": 16000}, ValueError, "NaN or infinite"),
        "missing file": (files["missing"], ValueError, "audio file not found"),
        "cut flac": (files["cut"], ValueError, "truncated or corrupt"),
        "wav header only": (files["header_only"], ValueError, "corrupt file or unsupported format"),
        "text renamed .wav": (files["text"], ValueError, "corrupt file or unsupported format"),
        "png": (str(files["png"]), ValueError, "corrupt file or unsupported format"),
        "png bytes": (PNG_BYTES, ValueError, "corrupt file or unsupported format"),
        "zero rate": ({"array": x, "sampling_rate": 0}, ValueError, "sampling_rate must be a positive rate"),
        "negative rate": ({"raw": x, "sampling_rate": -44100}, ValueError, "sampling_rate must be a positive rate"),
        "fractional rate": ({"array": x, "sampling_rate": 22050.5}, TypeError, "sampling_rate must be an int"),
        "dict without rate": ({"array": x}, ValueError, "must also have 'sampling_rate'"),
        "dict without audio": ({"name": "x"}, ValueError, "audio dict must have"),
        "complex": (x.astype(np.complex64), TypeError, "dtype complex64"),
        "bool": (x > 0, TypeError, "dtype bool"),
        "object": (np.array([0.1, None] * 500, dtype=object), TypeError, "dtype object"),
        "string array": (np.array(["a", "b"]), TypeError, "dtype <U1"),
        "strings in a dict array": (
            {"array": ["0.1", "0.2"], "sampling_rate": SR},
            TypeError,
            r"audio\['array'\] has dtype <U3",
        ),
        "int in a list": (
            [x, 5],
            TypeError,
            "must be a numpy array, a torch tensor, a path, bytes or a dict; got int",
        ),
        "None": (None, TypeError, "got NoneType"),
        "3-D": (np.zeros((2, 2, 500), np.float32), ValueError, r"must be 1-D \(mono\) or 2-D"),
        "url": ("https://example.com/song.mp3", ValueError, r"is a URL: download it first .*allow_urls=True"),
        "url in dict": ({"path": "http://example.com/a.wav", "bytes": None}, ValueError, "is a URL"),
    }


BAD_INPUT_NAMES = list(bad_inputs(dict.fromkeys(["missing", "cut", "header_only", "text", "png"], Path("unused"))))


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_bad_inputs(pipe, bad_files, name):
    source, exc, match = bad_inputs(bad_files)[name]
    with pytest.raises(exc, match=match) as info:
        pipe(source, candidate_labels=LABELS, segment_seconds=SEG)
    assert type(info.value) is exc


@pytest.mark.parametrize("batch_size", [1, 4])
def test_errors_inside_batched_preprocess_keep_their_type(pipe, bad_files, batch_size):
    """Preprocessing runs inside a DataLoader; the caller still sees the original ValueError/TypeError."""
    good = [music(SR, 0.5, seed=i) for i in range(3)]  # one 0.5 s segment each: the bad item is mid-batch
    cases = [
        ({"array": good[0], "sampling_rate": 0}, ValueError, "sampling_rate must be a positive rate"),
        (bad_files["cut"], ValueError, "truncated or corrupt"),
        (np.zeros(10, np.complex64), TypeError, "dtype complex64"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match) as info:
            pipe([*good, bad, *good], candidate_labels=LABELS, segment_seconds=0.5, batch_size=batch_size)
        assert type(info.value) is exc


def test_url_opt_in_downloads(pipe, monkeypatch, files, reference):
    """allow_urls=True fetches the bytes (stubbed: the tests are offline) and scores them."""
    monkeypatch.setattr(audio_meralign, "_download", lambda url: files["wav"].read_bytes())
    result = pipe("https://example.com/clip.wav", candidate_labels=LABELS, segment_seconds=SEG, allow_urls=True)
    assert_same_scores(result, reference)


@pytest.mark.parametrize(
    "name,source",
    [
        ("silence", np.zeros(3 * SR, np.float32)),
        ("100 samples", music(SR, 100 / SR, seed=7)),
        ("1 sample", np.full(1, 0.5, np.float32)),
        ("100 samples at 8 kHz", {"array": music(8000, 100 / 8000, seed=8), "sampling_rate": 8000}),
    ],
)
def test_silent_and_very_short_audio_give_valid_scores(pipe, name, source):
    for multi_label in (False, True):
        result = pipe(
            source, candidate_labels=LABELS, segment_seconds=SEG, multi_label=multi_label, return_segments=True
        )
        ranked = [{"label": lab, "score": s} for lab, s in zip(result["labels"], result["scores"])]
        assert_valid_ranking(ranked, softmax=not multi_label)
        assert len(result["segments"]) == (3 if name == "silence" else 1)
        assert result["segments"][0]["start"] == 0.0


# -------------------------------------------------------------------------------- audio-embedding cache
def counting_tower(monkeypatch, pipe) -> list[int]:
    """Count the segments the audio tower runs on (the cache's whole point is that it often runs on none)."""
    calls, real = [], pipe.encode_segments
    monkeypatch.setattr(
        pipe, "encode_segments", lambda values, valid: calls.append(len(values)) or real(values, valid)
    )
    return calls


def test_repeat_call_with_new_labels_does_not_run_the_tower(tiny_model, processors, clip, monkeypatch):
    pipe = make_pipeline(tiny_model, processors)
    calls = counting_tower(monkeypatch, pipe)
    first = pipe(clip, candidate_labels=LABELS, segment_seconds=SEG, return_segments=True)
    assert sum(calls) == 3  # three 1 s segments
    other = ["serene", "furious", "gloomy"]
    again = pipe(clip.copy(), candidate_labels=other, segment_seconds=SEG, return_segments=True)
    assert sum(calls) == 3  # same content: every segment came from the cache
    fresh = make_pipeline(tiny_model, processors)(
        clip, candidate_labels=other, segment_seconds=SEG, return_segments=True
    )
    assert again["labels"] == fresh["labels"]
    np.testing.assert_allclose(again["scores"], fresh["scores"], atol=1e-6)
    pipe(clip, candidate_labels=LABELS, segment_seconds=SEG / 2)  # other segments: other content
    assert sum(calls) == 3 + 5
    louder = pipe(clip * 0.5, candidate_labels=LABELS, segment_seconds=SEG)  # other samples, same length
    assert sum(calls) == 3 + 5 + 3 and louder != first


def test_audio_cache_is_bounded_and_can_be_turned_off(tiny_model, processors, clip, monkeypatch):
    pipe = make_pipeline(tiny_model, processors)
    pipe.audio_cache_size = 2
    calls = counting_tower(monkeypatch, pipe)
    pipe(clip, candidate_labels=LABELS, segment_seconds=SEG)
    assert len(pipe._audio_cache) == 2
    pipe(clip, candidate_labels=LABELS, segment_seconds=SEG)
    assert sum(calls) == 3 + 1  # the oldest segment was evicted and runs again
    pipe.audio_cache_size = 0
    pipe(clip, candidate_labels=LABELS, segment_seconds=SEG)
    assert sum(calls) == 3 + 1 + 3 and not pipe._audio_cache
    with pytest.raises(ValueError, match="audio_cache_size must be an int >= 0"):
        pipe.audio_cache_size = -1


def test_recording_embeddings_are_what_the_pipeline_scores(pipe, clip, reference):
    embeds, times = pipe.recording_embeddings(clip, segment_seconds=SEG)
    assert embeds.shape == (3, 384) and times == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3))
    labels = pipe.label_embeddings(LABELS, pipe.model.config.hypothesis_template)
    cosine = (embeds @ labels.t()).double().numpy()
    import scoring_meralign

    ranked, _ = scoring_meralign.score_recording(cosine, LABELS, calibration=pipe.calibration())
    assert [r["label"] for r in ranked] == [r["label"] for r in reference]
    np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in reference], atol=1e-6)
