"""The music library: index throughput, search latency and memory at 10k-1M segments, tagging 100k tracks.

    python benchmarks/library.py                       # everything: about 10 minutes on 2 busy cores
    python benchmarks/library.py --quick               # 10k and 100k segments only, smaller index runs
    python benchmarks/library.py --only query tagging  # parts: index, query, tagging

Index throughput runs the real pipeline over synthetic 30 s FLAC clips at 44.1 kHz (decoded and resampled as any
file is), with the tiny random tower and with the MERT-95M-shaped one (random weights: speed depends on the
shapes). Query and tagging numbers use synthetic random unit vectors written straight into the database (with
track rows, in the indexer's commit order), and a stand-in for the text tower that returns a random unit vector
per query, so they measure the database and the scoring, not MiniLM (whose cost per new query is measured
once, with the real pipeline). Each database size is written by one child process and queried by another, so
the query process's memory is its own. Writes benchmarks/results/library.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from common import current_rss_mb, environment, load_average, peak_rss_mb, quiet_warnings, write_result

PARTS = ("index", "query", "tagging")
DIM = 384
SEGMENTS_PER_TRACK = 10  # query databases: a 100 s track at 10 s segments
QUERIES = 30
TAG_LABELS = ["joyful", "sad", "tender", "angry", "calm", "tense", "solemn", "powerful", "dreamy", "nostalgic"]


# ------------------------------------------------------------------------------------- synthetic libraries
class StubPipe:
    """What search and tagging ask of a pipeline, without the text tower: one random unit vector per text."""

    def __init__(self):
        self.model = SimpleNamespace(config=SimpleNamespace(hypothesis_template="{}", default_aggregation="mean"))

    def label_embeddings(self, labels, template=None):
        import torch

        rows = []
        for label in labels:
            seed = int.from_bytes(hashlib.blake2b(label.encode(), digest_size=4).digest(), "little")
            rows.append(_unit(np.random.default_rng(seed).standard_normal((1, DIM)))[0])
        return torch.from_numpy(np.stack(rows))

    def calibration(self) -> dict:
        return {"logit_scale": math.log(1 / 0.07), "multilabel_scale": 10.0, "multilabel_bias": -5.0}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_synthetic(path: Path, n_tracks: int, per_track: int, seed: int = 0) -> dict:
    """A library of random unit vectors: segments, then their track rows (the indexer's order), compacted."""
    import pyarrow as pa

    from meralign.library.database import LibraryDatabase, LibraryInfo, track_vector, vector_array

    rng = np.random.default_rng(seed)
    info = LibraryInfo("synthetic/random", "0" * 32, 10.0, DIM)
    chunk = max(1, 100_000 // per_track)
    started = time.perf_counter()
    with LibraryDatabase.open_for_writing(path, info) as db:
        for first in range(0, n_tracks, chunk):
            ids = np.arange(first, min(n_tracks, first + chunk))
            vectors = _unit(rng.standard_normal((len(ids) * per_track, DIM)))
            hashes = [f"{i:032x}" for i in ids]
            segment = np.tile(np.arange(per_track, dtype=np.int32), len(ids))
            rows = {"content_hash": np.repeat(hashes, per_track), "segment": segment}
            rows |= {"start": segment * 10.0, "end": segment * 10.0 + 10.0, "vector": vector_array(vectors)}
            db.segments.add(pa.table(rows, schema=db.segments.schema))
            means = np.stack([track_vector(v) for v in vectors.reshape(len(ids), per_track, DIM)])
            tracks = {"path": [f"/music/track{i:07d}.flac" for i in ids], "content_hash": hashes}
            tracks |= {"size": np.full(len(ids), 4_000_000), "mtime_ns": np.zeros(len(ids), dtype=np.int64)}
            tracks |= {"duration": np.full(len(ids), per_track * 10.0), "segments": np.full(len(ids), per_track)}
            db.tracks.add(pa.table({**tracks, "vector": vector_array(means)}, schema=db.tracks.schema))
        for table in (db.segments, db.tracks):  # compacted, without the vector index (the query part times both)
            table.optimize(cleanup_older_than=timedelta(0))
    return {"write_s": round(time.perf_counter() - started, 2), "disk_mb": round(_disk_mb(path), 1)}


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _child(*args: str, threads: int) -> dict:
    """Run this file with `args` in a fresh process; returns the JSON it prints last."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--threads", str(threads), *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ query part
def query_child(path: str, ann: bool) -> dict:
    """Time searches of the library at `path`: a flat scan, then (with `ann`) with the vector index the library
    builds (IVF_FLAT, database.VECTOR_INDEX_FROM). The first query after opening is timed on its own: a
    one-shot `meralign search` pays it; the Python API and the Space keep the database open."""
    from meralign.library.database import LibraryDatabase, read_info

    baseline = current_rss_mb()
    result: dict = {"rss_mb": {"baseline": round(baseline, 1)}}
    db, pipe = LibraryDatabase.open(path), StubPipe()
    exact, result["brute_force"] = _timed_searches(db, pipe)
    result["segments"] = db.segments.count_rows()
    result["rss_mb"]["peak"] = round(peak_rss_mb(), 1)
    if ann:
        started = time.perf_counter()
        with LibraryDatabase.open_for_writing(path, read_info(path)) as writer:
            writer.compact()  # builds the index: the library's own rule
        result["ann_build_s"] = round(time.perf_counter() - started, 1)
        approx, result["ann"] = _timed_searches(LibraryDatabase.open(path), pipe)
        overlap = [len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]
        result["ann"]["recall_at_10"] = round(statistics.mean(overlap), 3)
        result["rss_mb"]["peak_with_index"] = round(peak_rss_mb(), 1)
    return result


def _timed_searches(db, pipe) -> tuple[list[list[str]], dict]:
    """The top-10 paths of QUERIES searches, and their latency (the first, cold one apart)."""
    from meralign.library.queries import search_library

    started = time.perf_counter()
    search_library(db, pipe, "first query", top=10)
    first = time.perf_counter() - started
    found, times = [], []
    for i in range(QUERIES):
        started = time.perf_counter()
        results = search_library(db, pipe, f"query {i}", top=10)
        times.append(time.perf_counter() - started)
        found.append([r["path"] for r in results])
    return found, {**_latency(times), "first_ms": round(1000 * first, 1)}


def _latency(times: list[float]) -> dict:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(math.ceil(0.95 * len(ordered))) - 1)]
    return {"median_ms": round(1000 * statistics.median(times), 1), "p95_ms": round(1000 * p95, 1)}


def bench_query(sizes: list[int], threads: int, ann_from: int) -> list[dict]:
    rows = []
    for n_segments in sizes:
        with tempfile.TemporaryDirectory(prefix="meralign-bench-library-") as tmp:
            path = str(Path(tmp) / "db")
            written = _child("--write-child", path, str(n_segments // SEGMENTS_PER_TRACK), threads=threads)
            args = ["--query-child", path] + (["--ann"] if n_segments >= ann_from else [])
            row = {**_child(*args, threads=threads), **written, "tracks": n_segments // SEGMENTS_PER_TRACK}
            rows.append(row)
            print(f"  query {n_segments:>9,} segments: {row['brute_force']} {row.get('ann', '')}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------- tagging part
def tagging_child(path: str) -> dict:
    from meralign.library.database import LibraryDatabase
    from meralign.library.tagging import tag_library

    baseline = current_rss_mb()
    db, pipe = LibraryDatabase.open(path), StubPipe()
    out = {}
    for aggregation in ("mean", "vote"):
        started = time.perf_counter()
        rows = tag_library(db, pipe, TAG_LABELS, aggregation=aggregation, top_k=3)
        out[f"{aggregation}_s"] = round(time.perf_counter() - started, 2)
    out |= {"tracks": len(rows), "rss_mb": {"baseline": round(baseline, 1), "peak": round(peak_rss_mb(), 1)}}
    return out


def bench_tagging(n_tracks: int, per_track: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="meralign-bench-tagging-") as tmp:
        path = str(Path(tmp) / "db")
        written = _child("--write-child", path, str(n_tracks), "--per-track", str(per_track), threads=threads)
        result = {**_child("--tagging-child", path, threads=threads), **written}
    result |= {"segments": n_tracks * per_track, "labels": len(TAG_LABELS)}
    print(f"  tagging {n_tracks:,} tracks x {per_track} segments: {result}", flush=True)
    return result


# ------------------------------------------------------------------------------------------ index part
def write_clips(folder: Path, n_files: int, seconds: float = 30.0, sr: int = 44100) -> float:
    import soundfile as sf

    from meralign.data.synthetic.render import render_clip

    emotions = ["joyful", "sad", "tense", "calm", "angry", "tender", "solemn", "powerful"]
    for i in range(n_files):
        wave = render_clip([emotions[i % len(emotions)]], seed=i, seconds=seconds, sampling_rate=sr)
        sf.write(folder / f"clip{i:03d}.flac", wave, sr)
    return n_files * seconds


def bench_index(model_name: str, n_files: int) -> dict:
    from transformers import pipeline

    import pipeline_meralign
    from meralign.library.api import Library
    from meralign.testing import build_mert_95m_model, build_tiny_model
    from modeling_meralign import build_processors

    with quiet_warnings():
        model = build_tiny_model() if model_name == "tiny" else build_mert_95m_model()
    processors = build_processors(model.config, model.config.text_name_or_path)
    pipe = pipeline(pipeline_meralign.TASK, model=model, feature_extractor=processors[0], tokenizer=processors[1])
    with tempfile.TemporaryDirectory(prefix="meralign-bench-index-") as tmp:
        music = Path(tmp) / "music"
        music.mkdir()
        audio_seconds = write_clips(music, n_files)
        started = time.perf_counter()
        library = Library.open(Path(tmp) / "db", f"bench/{model_name}", pipe=pipe, create=True)
        fingerprint_s = time.perf_counter() - started
        report = library.index([music], progress=False)
        rerun = library.index([music], progress=False)
    segments = audio_seconds / model.config.segment_seconds
    result = {
        "model": model_name,
        "files": len(report.indexed),
        "audio_s": audio_seconds,
        "segment_seconds": model.config.segment_seconds,
        "index_s": round(report.seconds, 2),
        "files_per_s": round(len(report.indexed) / report.seconds, 3),
        "audio_s_per_s": round(audio_seconds / report.seconds, 2),
        "segments_per_s": round(segments / report.seconds, 2),
        "rerun_s": round(rerun.seconds, 3),
        "fingerprint_s": round(fingerprint_s, 3),
    }
    print(f"  index {model_name}: {result}", flush=True)
    return result


def measure_text_query(n: int = 10) -> dict:
    """The real cost of a new query's text embedding (MiniLM, uncached) that the query part leaves out."""
    from transformers import pipeline

    import pipeline_meralign
    from meralign.library.tagging import label_vectors
    from meralign.testing import build_tiny_model
    from modeling_meralign import build_processors

    with quiet_warnings():
        model = build_tiny_model()
    fe, tok = build_processors(model.config, model.config.text_name_or_path)
    pipe = pipeline(pipeline_meralign.TASK, model=model, feature_extractor=fe, tokenizer=tok)
    label_vectors(pipe, ["warm up"])
    times = []
    for i in range(n):
        started = time.perf_counter()
        label_vectors(pipe, [f"melancholic but hopeful {i}"])
        times.append(time.perf_counter() - started)
    return _latency(times)


# ------------------------------------------------------------------------------------------------ main
def table(result: dict) -> str:
    lines = ["| part | size | numbers |", "| --- | --- | --- |"]
    for row in result.get("index", []):
        lines.append(
            f"| index, {row['model']} model | {row['files']} files, {row['audio_s'] / 60:.0f} min audio | "
            f"{row['files_per_s']} files/s, {row['audio_s_per_s']} audio s/s, rerun {row['rerun_s']} s |"
        )
    for row in result.get("query", []):
        flat, ann, rss = row["brute_force"], row.get("ann"), row["rss_mb"]
        cells = f"flat scan {flat['median_ms']} ms (p95 {flat['p95_ms']}, first {flat['first_ms']})"
        cells += f", +{rss['peak'] - rss['baseline']:.0f} MB"
        if ann:
            cells += f"; IVF_FLAT {ann['median_ms']} ms (p95 {ann['p95_ms']}, first {ann['first_ms']}), recall@10 "
            cells += f"{ann['recall_at_10']}, built in {row['ann_build_s']} s"
            cells += f", +{rss['peak_with_index'] - rss['baseline']:.0f} MB"
        lines.append(f"| search top 10 | {row['segments']:,} segments | {cells}; {row['disk_mb']:.0f} MB on disk |")
    if "tagging" in result:
        t = result["tagging"]
        lines.append(
            f"| tag, {t['labels']} labels | {t['tracks']:,} tracks x {t['segments'] // t['tracks']} segments | "
            f"mean {t['mean_s']} s, vote {t['vote_s']} s; +{t['rss_mb']['peak'] - t['rss_mb']['baseline']:.0f} MB |"
        )
    if "text_query" in result:
        lines.append(f"| query text embedding (MiniLM) | 1 query | {result['text_query']['median_ms']} ms |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k and 100k segments, smaller index runs")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--no-mert", action="store_true", help="skip the MERT-95M-shaped index run")
    parser.add_argument("--ann-from", type=int, default=20_000, help="also time the vector index from this size")
    parser.add_argument("--results-dir", type=Path, default=None, help="where library.json goes")
    parser.add_argument("--write-child", nargs=2, metavar=("DB", "TRACKS"), help=argparse.SUPPRESS)
    parser.add_argument("--per-track", type=int, default=SEGMENTS_PER_TRACK, help=argparse.SUPPRESS)
    parser.add_argument("--query-child", help=argparse.SUPPRESS)
    parser.add_argument("--ann", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tagging-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.write_child:
        print(json.dumps(write_synthetic(Path(args.write_child[0]), int(args.write_child[1]), args.per_track)))
        return 0
    if args.query_child:
        print(json.dumps(query_child(args.query_child, args.ann)))
        return 0
    if args.tagging_child:
        print(json.dumps(tagging_child(args.tagging_child)))
        return 0
    result = {"environment": environment(), "threads": args.threads, "load_before": load_average()}
    started = time.perf_counter()
    if "index" in args.only:
        result["index"] = [bench_index("tiny", 8 if args.quick else 24)]
        if not args.no_mert:
            result["index"].append(bench_index("mert-95m", 2 if args.quick else 4))
    if "query" in args.only:
        sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
        result["query"] = bench_query(sizes, args.threads, args.ann_from)
        result["text_query"] = measure_text_query()
    if "tagging" in args.only:
        result["tagging"] = bench_tagging(20_000 if args.quick else 100_000, 3, args.threads)
    result |= {"load_after": load_average(), "total_s": round(time.perf_counter() - started, 1)}
    result["table"] = table(result)
    print(result["table"])
    write_result("library", result, *([args.results_dir] if args.results_dir else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
