"""Feature cache: segment counts, numbers against a direct model computation, distribution across
processes, resumption after SIGKILL, bad audio, vocabulary and fingerprint refusals.

Clips are 0.4-2.3 s at segment_seconds=1.0, so the expected counts follow from the half-segment
rule by hand: a trailing piece is kept when >= 0.5 s, and a clip's first segment is always kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from helpers import REPO_ROOT, accelerate_launch, torch_threads  # noqa: E402

from audio_meralign import iter_segments  # noqa: E402
from meralign.data.tracks import Track  # noqa: E402
from meralign.features.cache import load_cache  # noqa: E402
from meralign.features.cli import extract_main, parse_extract_arguments  # noqa: E402
from meralign.features.extract import ExtractionWarning, extract_features  # noqa: E402
from meralign.vocabularies import EMOTIFY, Vocabulary  # noqa: E402
from modeling_meralign import pool_frames  # noqa: E402

REPO = REPO_ROOT
SR = 24000
MERT_RECEPTIVE_FIELD = 400  # conv kernels 10,3,3,3,3,2,2 / strides 5,2,2,2,2,2,2

# (track id, seconds, file rate, expected segments (start, end) at 1 s segments)
CLIPS = [
    ("a_long", 2.3, 24000, [(0.0, 1.0), (1.0, 2.0)]),  # 0.3 s tail < half a segment: dropped
    ("b_resampled", 1.6, 16000, [(0.0, 1.0), (1.0, 1.6)]),  # 0.6 s tail: kept, padded; 16 kHz file
    ("c_exact", 1.0, 24000, [(0.0, 1.0)]),
    ("d_short", 0.4, 24000, [(0.0, 0.4)]),  # the only segment: kept even though < half
]
N_SEGMENTS = sum(len(c[3]) for c in CLIPS)  # 6


def write_clip(path: Path, seconds: float, rate: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    audio = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    sf.write(path, audio.astype(np.float32), rate)


@pytest.fixture(scope="module")
def model(tiny_model_1s):
    return tiny_model_1s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """The clips, as Tracks and as a JSONL manifest (dataset 'moods', Emotify labels)."""
    root = tmp_path_factory.mktemp("corpus")
    labels = [["calmness"], ["tension", "power"], ["sadness"], ["joyful_activation"]]
    splits = ["train", "train", "validation", "test"]
    tracks, lines = [], []
    for seed, ((track_id, seconds, rate, _), lab, split) in enumerate(zip(CLIPS, labels, splits)):
        path = root / f"{track_id}.wav"
        write_clip(path, seconds, rate, seed)
        tracks.append(Track(track_id, str(path), tuple(lab), split, "moods"))
        lines.append(json.dumps({"path": path.name, "labels": lab, "split": split}) + "\n")
    manifest = root / "moods.jsonl"
    manifest.write_text("".join(lines))
    return {"root": root, "tracks": tracks, "manifest": manifest}


def cli_args(corpus: dict, cache_dir: Path) -> list[str]:
    return [
        "--model",
        "tiny",
        "--segment_seconds",
        "1.0",
        "--manifests",
        str(corpus["manifest"]),
        "--vocabularies",
        "emotify",
        "--cache_dir",
        str(cache_dir),
        "--tracks_per_shard",
        "1",
        "--batch_size",
        "1",
        "--progress",
        "false",
    ]


# The extract command with a pause after every batch (`on_batch`), so a test can kill it mid-run.
SLOW_EXTRACT = """
import sys, time
from meralign.features.cli import build_model, load_tracks, parse_extract_arguments
from meralign.features.extract import extract_features

args = parse_extract_arguments(sys.argv[1:])
tracks, vocabularies = load_tracks(args)
extract_features(build_model(args), tracks, args.cache_dir, batch_size=args.batch_size,
                 tracks_per_shard=args.tracks_per_shard, vocabularies=vocabularies, progress=False,
                 on_batch=lambda n: time.sleep(0.5))
"""
# Two processes where process 1 cannot write its shards (a full disk): both must stop, none may hang.
FAILING_SECOND_PROCESS = """
import errno, os, sys
import meralign.features.shards as shards
from meralign.features.cli import extract_main

if os.environ["RANK"] == "1":
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    shards._write_shard_files = full_disk
sys.exit(extract_main(sys.argv[1:]))
"""


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def reference_cache(corpus, tmp_path_factory) -> Path:
    """An uninterrupted one-process CLI run, in this process, on one thread (like the subprocesses)."""
    cache_dir = tmp_path_factory.mktemp("reference") / "cache"
    with torch_threads(1):
        assert extract_main(cli_args(corpus, cache_dir)) == 0
    return cache_dir


def assert_same_cache(a: Path, b: Path) -> None:
    ca, cb = load_cache(a), load_cache(b)
    assert ca.index == cb.index
    assert ca.meta == cb.meta
    for pooling in ("mean", "first"):
        np.testing.assert_array_equal(ca.features(pooling), cb.features(pooling))


def direct_features(model, path: str, segment: int) -> dict[str, np.ndarray]:
    """One segment through the model by hand: [n_layers, hidden] per pooling, float32."""
    seg = list(iter_segments(path, SR, 1.0))[segment]
    mask = torch.zeros(1, len(seg.samples), dtype=torch.long)
    mask[0, : max(seg.valid, MERT_RECEPTIVE_FIELD)] = 1
    with torch.inference_mode():
        states, frame_mask = model.audio_hidden_states(torch.from_numpy(seg.samples)[None], mask)
        return {
            p: torch.stack([pool_frames(states[i], frame_mask, p)[0] for i in model.config.feature_layers]).numpy()
            for p in ("mean", "first")
        }


# ---------------------------------------------------------------------------------------- 1. numbers
def test_segments_and_features_match_direct_computation(model, corpus, tmp_path):
    report = extract_features(
        model, corpus["tracks"], tmp_path / "cache", batch_size=4, tracks_per_shard=3, progress=False
    )
    assert (report.n_tracks, report.n_segments, report.n_failed, report.n_shards) == (4, N_SEGMENTS, 0, 2)
    assert (report.shards_done, report.shards_skipped) == (2, 0)

    cache = load_cache(tmp_path / "cache")
    assert len(cache) == N_SEGMENTS
    expected_rows = [(tid, i, start, end) for tid, _, _, segs in CLIPS for i, (start, end) in enumerate(segs)]
    got_rows = [(r["track_id"], r["segment"], round(r["start"], 6), round(r["end"], 6)) for r in cache.index]
    assert got_rows == expected_rows
    assert cache.index[2]["labels"] == ["tension", "power"] and cache.index[2]["split"] == "train"
    assert cache.meta["feature_layers"] == [1, 2, 3, 4] and cache.meta["hidden_size"] == 64
    assert cache.meta["segment_seconds"] == 1.0 and cache.meta["poolings"] == ["mean", "first"]

    paths = {t.track_id: t.audio for t in corpus["tracks"]}
    direct = [direct_features(model, paths[r["track_id"]], r["segment"]) for r in cache.index]
    for pooling in ("mean", "first"):
        features = cache.features(pooling)
        assert features.shape == (N_SEGMENTS, 4, 64) and features.dtype == np.float16
        for row in range(N_SEGMENTS):
            # float16 keeps 11 significant bits: relative rounding error <= 2**-11
            np.testing.assert_allclose(features[row].astype(np.float32), direct[row][pooling], rtol=2**-10, atol=1e-3)
    # mean pooling excludes padding: the padded segment's mean differs from an unmasked mean
    assert not np.allclose(cache.features("mean")[3], cache.features("first")[3])

    # shards are memory-mapped, row selection by dataset/split
    assert all(isinstance(a, np.memmap) for a in cache.shard_features("first"))
    assert cache.select(splits="train").tolist() == [0, 1, 2, 3]
    assert cache.select(splits=["validation", "test"]).tolist() == [4, 5]
    assert cache.select(datasets=["elsewhere"]).tolist() == []


def test_workers_and_batch_layout_do_not_change_the_cache(model, corpus, tmp_path):
    """Segments are batched within a shard, so decoding workers leave every number unchanged."""
    with torch_threads(1):
        extract_features(model, corpus["tracks"], tmp_path / "w0", batch_size=3, tracks_per_shard=2, progress=False)
        extract_features(
            model, corpus["tracks"], tmp_path / "w2", batch_size=3, tracks_per_shard=2, num_workers=2, progress=False
        )
    assert_same_cache(tmp_path / "w0", tmp_path / "w2")


# ------------------------------------------------------------------------------------- 2. processes
@pytest.mark.slow  # ~25-35 s on 2 shared cores: three interpreters import torch + transformers
def test_two_processes_give_the_one_process_cache(corpus, reference_cache, tmp_path):
    cache_dir = tmp_path / "cache"
    command = accelerate_launch(2, "train.py", "extract", *cli_args(corpus, cache_dir))
    done = subprocess.run(
        command, cwd=REPO, env=subprocess_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((cache_dir / "extraction_report.json").read_text())
    assert (report["n_segments"], report["shards_done"], report["n_shards"]) == (N_SEGMENTS, 4, 4)
    # the work was split: process p wrote shards i % 2 == p
    writers = [json.loads((cache_dir / f"shard-{i:05d}" / "shard.json").read_text())["written_by"] for i in range(4)]
    assert writers == [{"process_index": i % 2, "num_processes": 2} for i in range(4)]
    assert_same_cache(reference_cache, cache_dir)


@pytest.mark.slow  # ~25-35 s on 2 shared cores, like the test above
def test_a_process_that_fails_to_write_stops_every_process(corpus, tmp_path):
    script = tmp_path / "failing_second_process.py"
    script.write_text(FAILING_SECOND_PROCESS)
    command = accelerate_launch(2, str(script), *cli_args(corpus, tmp_path / "cache"))
    done = subprocess.run(
        command, cwd=REPO, env=subprocess_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=240
    )  # a hang would end here with TimeoutExpired
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "No space left on device" in output and "could not write feature shard" in output, output[-3000:]
    assert "1 other process(es) failed while extracting their shards" in output, output[-3000:]
    with pytest.raises(ValueError, match="incomplete"):
        load_cache(tmp_path / "cache")


# ------------------------------------------------------------------------------------- 3. SIGKILL
def test_killed_run_resumes_without_recomputing(corpus, reference_cache, tmp_path):
    cache_dir = tmp_path / "cache"
    command = [sys.executable, "-c", SLOW_EXTRACT, *cli_args(corpus, cache_dir)]
    proc = subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not (cache_dir / "shard-00000").exists():
            assert proc.poll() is None, "extraction ended before it could be interrupted"
            assert time.monotonic() < deadline, "no shard appeared within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)

    complete = sorted(p.name for p in cache_dir.glob("shard-?????") if p.is_dir())
    assert 1 <= len(complete) < 4, complete
    with pytest.raises(ValueError, match="incomplete.*rerun"):
        load_cache(cache_dir)
    stale = cache_dir / "shard-00003.tmp-999999"  # what a kill during a shard write leaves behind
    stale.mkdir(exist_ok=True)
    (stale / "mean.npy").write_bytes(b"partial")
    stamps = {f: (f.stat().st_mtime_ns, f.stat().st_ino) for name in complete for f in (cache_dir / name).iterdir()}

    with torch_threads(1):
        assert extract_main(cli_args(corpus, cache_dir)) == 0
    report = json.loads((cache_dir / "extraction_report.json").read_text())
    assert report["shards_skipped"] == len(complete)
    assert report["shards_done"] == 4 - len(complete)
    assert {f: (f.stat().st_mtime_ns, f.stat().st_ino) for f in stamps} == stamps  # untouched
    assert not list(cache_dir.glob("*.tmp-*"))
    assert_same_cache(reference_cache, cache_dir)


# ----------------------------------------------------------------------------------- 4. bad audio
def test_corrupt_and_missing_audio_are_reported_and_skipped(model, corpus, tmp_path):
    corrupt = tmp_path / "noise.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    # NaN at 5 s: segments 0 and 1 decode (and go through the model) before the failure
    nan_clip = np.full(6 * SR, 0.1, dtype=np.float32)
    nan_clip[5 * SR] = np.nan
    sf.write(tmp_path / "nan.wav", nan_clip, SR, subtype="FLOAT")
    bad = [
        Track("x_corrupt", str(corrupt), ("power",), "train", "moods"),
        Track("x_missing", str(tmp_path / "absent.wav"), ("power",), "test", "moods"),
        Track("x_nan", str(tmp_path / "nan.wav"), ("power",), "test", "moods"),
    ]
    with pytest.warns(ExtractionWarning) as caught:
        report = extract_features(
            model, corpus["tracks"] + bad, tmp_path / "cache", batch_size=1, tracks_per_shard=3, progress=False
        )
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["x_corrupt", "x_missing", "x_nan"]
    reasons = {f["track_id"]: f["reason"] for f in report.failed}
    assert report.n_failed == 3 and set(reasons) == {"x_corrupt", "x_missing", "x_nan"}
    assert "could not decode" in reasons["x_corrupt"]
    assert "not found" in reasons["x_missing"]
    assert "NaN" in reasons["x_nan"]
    assert all(f["dataset"] == "moods" for f in report.failed)

    cache = load_cache(tmp_path / "cache")
    assert len(cache) == N_SEGMENTS == report.n_segments
    assert {r["track_id"] for r in cache.index} == {c[0] for c in CLIPS}
    assert cache.features("mean").shape[0] == N_SEGMENTS
    assert {f["track_id"] for f in cache.failed} == set(reasons)
    # x_nan is alone in the last shard: its two decoded segments were dropped, the shard is empty
    last = json.loads((tmp_path / "cache" / "shard-00002" / "shard.json").read_text())
    assert (last["tracks"], last["n_segments"]) == ([["moods", "x_nan"]], 0)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["report"]["n_failed"] == 3


# ------------------------------------------------------------------------ 5. labels and refusals
def test_label_outside_vocabulary_is_refused_before_any_work(model, corpus, tmp_path):
    tracks = corpus["tracks"] + [Track("z_odd", corpus["tracks"][0].audio, ("calmness", "groovy"), "train", "moods")]
    with pytest.raises(ValueError, match=r"'z_odd'.*'groovy'"):
        extract_features(model, tracks, tmp_path / "cache", vocabularies={"moods": EMOTIFY}, progress=False)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="no entry for dataset 'moods'"):
        extract_features(model, tracks, tmp_path / "cache", vocabularies={"other": EMOTIFY}, progress=False)
    # the same tracks pass with a vocabulary that has the label
    vocab = Vocabulary("moods", EMOTIFY.labels + ("groovy",))
    report = extract_features(model, tracks[-2:], tmp_path / "ok", vocabularies={"moods": vocab}, progress=False)
    assert report.n_segments == 3  # d_short: 1 segment; z_odd reuses a_long's 2.3 s audio: 2


def test_mismatched_rerun_is_refused(model, corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    extract_features(model, corpus["tracks"], cache_dir, tracks_per_shard=2, progress=False)
    with pytest.raises(ValueError, match="different track set"):
        extract_features(model, corpus["tracks"][:3], cache_dir, tracks_per_shard=2, progress=False)
    relabelled = [Track(t.track_id, t.audio, ("sadness",), t.split, t.dataset) for t in corpus["tracks"]]
    with pytest.raises(ValueError, match="different track set"):
        extract_features(model, relabelled, cache_dir, tracks_per_shard=2, progress=False)
    with pytest.raises(ValueError, match="tracks_per_shard=2"):
        extract_features(model, corpus["tracks"], cache_dir, tracks_per_shard=3, progress=False)
    # same config, other weights (e.g. another checkpoint of the same architecture)
    weight = model.audio_model.feature_projection.projection.weight
    with torch.no_grad():
        weight.add_(1e-3)
    try:
        with pytest.raises(ValueError, match="different audio tower"):
            extract_features(model, corpus["tracks"], cache_dir, tracks_per_shard=2, progress=False)
    finally:
        with torch.no_grad():
            weight.sub_(1e-3)
    model.config.segment_seconds = 2.0
    try:
        with pytest.raises(ValueError, match="segment_seconds=1.0"):
            extract_features(model, corpus["tracks"], cache_dir, tracks_per_shard=2, progress=False)
    finally:
        model.config.segment_seconds = 1.0
    # the refused runs left the cache intact and loadable
    assert len(load_cache(cache_dir)) == N_SEGMENTS


def test_bad_arguments_and_missing_cache(model, corpus, tmp_path):
    with pytest.raises(ValueError, match="not a feature cache"):
        load_cache(tmp_path / "nothing")
    with pytest.raises(ValueError, match="tracks_per_shard"):
        extract_features(model, corpus["tracks"], tmp_path / "c", tracks_per_shard=0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, corpus["tracks"], tmp_path / "c", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="tracks is empty"):
        extract_features(model, [], tmp_path / "c", progress=False)
    with pytest.raises(TypeError, match="Track"):
        extract_features(model, ["song.wav"], tmp_path / "c", progress=False)
    dup = corpus["tracks"][:1] * 2
    with pytest.raises(ValueError, match="more than once"):
        extract_features(model, dup, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="mixed_precision"):
        extract_features(model, corpus["tracks"], tmp_path / "c", mixed_precision="fp8", progress=False)


def test_cli_reads_yaml_config(tmp_path):
    config = tmp_path / "extract.yaml"
    config.write_text(
        "cache_dir: out/cache\nmanifests: [a.jsonl, b.csv]\nvocabularies: [emotify]\n"
        "model: tiny\nbatch_size: 4\nmixed_precision: fp16\nfeature_layers: null\n"
    )
    args = parse_extract_arguments([str(config)])
    assert (args.cache_dir, args.manifests, args.vocabularies, args.model) == (
        "out/cache",
        ["a.jsonl", "b.csv"],
        ["emotify"],
        "tiny",
    )
    assert (args.batch_size, args.mixed_precision, args.tracks_per_shard) == (4, "fp16", 16)
    flags = parse_extract_arguments(
        ["--cache_dir", "c", "--manifests", "m.jsonl", "--mert", "m", "--feature_layers", "3", "6"]
    )
    assert flags.feature_layers == [3, 6] and flags.model is None
    with pytest.raises(SystemExit):
        parse_extract_arguments(["--cache_dir", "c", "--manifests", "m.jsonl", "--mixed_precision", "fp8"])


def test_native_dataset_specs_reach_the_adapters(tmp_path):
    """`--datasets emotify:data_csv=...,audio_dir=...` reads the native layout with the built-in vocabulary."""
    from helpers import write_emotify

    from meralign.features.cli import ExtractArguments, load_native_dataset, load_tracks

    data = write_emotify(tmp_path / "data.csv")
    spec = f"emotify:data_csv={data},audio_dir={tmp_path / 'audio'},seed=3"
    tracks = load_native_dataset(spec)
    assert tracks and {t.dataset for t in tracks} == {"emotify"}
    args = ExtractArguments(cache_dir=str(tmp_path / "c"), datasets=[spec])
    loaded, vocabularies = load_tracks(args)
    assert loaded == tracks and vocabularies["emotify"].name == "emotify"
    with pytest.raises(ValueError, match="kind must be one of"):
        load_native_dataset("manifest:path=x")
    with pytest.raises(ValueError, match="key=value"):
        load_native_dataset("emotify:oops")
