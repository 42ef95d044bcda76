"""Write failures (a full disk) during feature extraction and during training checkpoints.

Each fault is injected at one write (by patching the function that does it to write part of its bytes and then
raise OSError(ENOSPC)), plus once for real on a tiny tmpfs when this machine lets the test mount one. After
every fault the test checks the same four things:

- the run stops with an OSError that keeps errno ENOSPC and says what could not be written and what to do;
- what was complete before the fault is still there and loadable; nothing half-written is visible;
- an incomplete feature cache is refused by load_cache;
- rerunning (extract again / fit --resume) finishes with exactly what an uninterrupted run produces.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fake_cache import make_cache
from helpers import torch_threads

import meralign.features.extract as extract_module
import meralign.features.shards as shards
import meralign.files as files
import meralign.head as head_module
import meralign.training.trainer as trainer
from meralign.data.tracks import Track
from meralign.features.cache import load_cache
from meralign.features.extract import extract_features
from meralign.features.layout import MANIFEST
from meralign.head import load_head
from meralign.training.arguments import FitArguments
from meralign.training.trainer import fit

SR = 16000
CLIP_SECONDS = (1.4, 0.7, 2.2, 1.0)  # one track per shard: four shards
ENOSPC = errno.ENOSPC


class DiskFull:
    """Wraps a writing function: its `fail_at`-th matching call writes half of what it would and raises ENOSPC."""

    def __init__(self, fail_at: int, matches=lambda *args, **kwargs: True):
        self.fail_at, self.matches, self.calls, self.fired = fail_at, matches, 0, False

    def wrap(self, real, partial=None):
        def wrapper(*args, **kwargs):
            if self.matches(*args, **kwargs):
                self.calls += 1
                if self.calls == self.fail_at:
                    self.fired = True
                    if partial is not None:
                        partial(*args, **kwargs)
                    raise OSError(ENOSPC, os.strerror(ENOSPC))
            return real(*args, **kwargs)

        return wrapper


# ------------------------------------------------------------------------------------------- extraction
@pytest.fixture(scope="module")
def model(tiny_model_1s):
    return tiny_model_1s


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list[Track]:
    root = tmp_path_factory.mktemp("fault_corpus")
    out = []
    for i, seconds in enumerate(CLIP_SECONDS):
        t = np.arange(int(seconds * SR)) / SR
        path = root / f"clip{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 60 * i) * t)).astype(np.float32), SR)
        out.append(Track(f"t{i}", str(path), ("calmness",), "train", "moods"))
    return out


def extract(model, tracks, cache_dir):
    with torch_threads(1):
        return extract_features(model, tracks, cache_dir, batch_size=2, tracks_per_shard=1, progress=False)


@pytest.fixture(scope="module")
def reference(model, tracks, tmp_path_factory) -> Path:
    cache_dir = tmp_path_factory.mktemp("reference") / "cache"
    extract(model, tracks, cache_dir)
    return cache_dir


def assert_same_cache(a: Path, b: Path) -> None:
    ca, cb = load_cache(a), load_cache(b)
    assert ca.index == cb.index and ca.meta == cb.meta
    for pooling in ("mean", "first"):
        np.testing.assert_array_equal(ca.features(pooling), cb.features(pooling))


def assert_nothing_half_written(cache_dir: Path) -> list[str]:
    """Only complete shards are visible, no temp folder or temp file is left behind; returns the shard names."""
    names = sorted(p.name for p in cache_dir.iterdir())
    assert not [n for n in names if ".tmp" in n], names
    shards = [n for n in names if n.startswith("shard-")]
    for name in shards:
        assert sorted(p.name for p in (cache_dir / name).iterdir()) == [
            "first.npy",
            "index.jsonl",
            "mean.npy",
            "shard.json",
        ]
    return shards


def _half_npy(file, array, **kwargs):
    file.write(b"\x93NUMPY" + bytes(16))  # a header start and no data: what a full disk leaves


def _half_bytes(path, writer):
    Path(path).write_bytes(b'{"truncat')


def _is_temp_shard_rename(src, dst, *args, **kwargs):
    return ".tmp-" in os.fspath(src)


def _is_final_manifest(path, obj, *args, **kwargs):
    return Path(path).name == MANIFEST and obj.get("complete")


# name -> (object, attribute, DiskFull, partial writer, what the message names)
EXTRACTION_FAULTS = {
    # the second shard's mean.npy (np.save is called twice per shard, mean then first)
    "npy data": (np, "save", lambda: DiskFull(3), _half_npy, "could not write feature shard shard-00001"),
    # the third shard's shard.json, its last file (four writes per shard)
    "shard metadata": (
        shards,
        "write_synced",
        lambda: DiskFull(12),
        _half_bytes,
        "could not write feature shard shard-00002",
    ),
    # publishing the second shard (rename of its complete temp folder)
    "shard rename": (
        os,
        "rename",
        lambda: DiskFull(2, _is_temp_shard_rename),
        None,
        "could not write feature shard shard-00001",
    ),
    # the manifest that marks the cache complete, after every shard is on disk
    "final manifest": (
        extract_module,
        "atomic_write_json",
        lambda: DiskFull(1, _is_final_manifest),
        None,
        "could not finish the feature cache",
    ),
}


@pytest.mark.parametrize("fault", list(EXTRACTION_FAULTS))
def test_disk_full_during_extraction_keeps_complete_shards_and_a_rerun_finishes(
    model, tracks, reference, tmp_path, monkeypatch, fault
):
    target, attribute, make_fault, partial, names = EXTRACTION_FAULTS[fault]
    disk = make_fault()
    monkeypatch.setattr(target, attribute, disk.wrap(getattr(target, attribute), partial))
    cache_dir = tmp_path / "cache"
    with pytest.raises(OSError) as info:
        extract(model, tracks, cache_dir)
    monkeypatch.undo()
    assert disk.fired and info.value.errno == ENOSPC
    message = str(info.value)
    assert names in message and "No space left on device" in message and "rerun" in message, message

    shards = assert_nothing_half_written(cache_dir)
    expected_kept = {"npy data": 1, "shard metadata": 2, "shard rename": 1, "final manifest": 4}[fault]
    assert len(shards) == expected_kept
    for name in shards:  # each kept shard is the reference's, byte for byte
        for file in ("mean.npy", "first.npy", "index.jsonl"):
            assert (cache_dir / name / file).read_bytes() == (reference / name / file).read_bytes()
    with pytest.raises(ValueError, match="incomplete"):
        load_cache(cache_dir)

    report = extract(model, tracks, cache_dir)
    assert (report.shards_skipped, report.shards_done) == (expected_kept, 4 - expected_kept)
    assert_same_cache(reference, cache_dir)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    """A real, tiny filesystem (Linux, root). False where mounting is not allowed (most CI containers)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return result.returncode == 0


def _fill(folder: Path, leave_pages: int) -> list[Path]:
    """Fill the filesystem with one-page files until it is full, then delete `leave_pages` of them."""
    pages, page = [], os.sysconf("SC_PAGE_SIZE")
    while True:
        path = folder / f"filler-{len(pages):05d}"
        try:
            path.write_bytes(b"\0" * page)
        except OSError as err:
            assert err.errno == ENOSPC
            path.unlink(missing_ok=True)
            break
        pages.append(path)
    for path in pages[-leave_pages:]:
        path.unlink()
    return pages[:-leave_pages]


def test_a_real_full_disk_during_extraction(model, tracks, reference, tmp_path):
    """The same on a 256 KB tmpfs left with 8 free pages: the manifest and the first shard fit, the next does not."""
    mount = tmp_path / "tiny_fs"
    mount.mkdir()
    if not _mount_tmpfs(mount, "256k"):
        pytest.skip("mounting a tmpfs is not permitted here (needs root in a privileged container)")
    try:
        fillers = _fill(mount, leave_pages=8)
        cache_dir = mount / "cache"
        with pytest.raises(OSError) as info:
            extract(model, tracks, cache_dir)
        assert info.value.errno == ENOSPC and "rerun" in str(info.value), str(info.value)
        shards = assert_nothing_half_written(cache_dir)
        # here: shard-00000 is kept and shard-00001 is refused; page accounting may shift it by a shard elsewhere
        assert "could not write feature shard" in str(info.value) and 1 <= len(shards) < len(tracks), (
            str(info.value),
            shards,
        )
        with pytest.raises(ValueError, match="incomplete|not a feature cache"):
            load_cache(cache_dir)
        for path in fillers:  # the operator frees space
            path.unlink()
        report = extract(model, tracks, cache_dir)
        assert report.shards_skipped == len(shards)
        assert_same_cache(reference, cache_dir)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -------------------------------------------------------------------------------------------- training
VOCAB = ("happy", "sad", "calm", "angry")


@pytest.fixture(scope="module")
def cache():
    return make_cache(
        {"a": {label: i for i, label in enumerate(VOCAB)}, "b": {f"{lab}!": i for i, lab in enumerate(VOCAB)}},
        n_tracks=24,
    )


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("vocabs")
    entries = []
    for name, labels in (("a", VOCAB), ("b", tuple(f"{lab}!" for lab in VOCAB))):
        (folder / f"{name}.json").write_text(json.dumps({"labels": list(labels), "top_k": 1}))
        entries.append(f"{name}={folder / f'{name}.json'}")
    return entries


def fit_args(output_dir: Path, vocab_files, **overrides) -> FitArguments:
    fields = dict(
        cache_dir="",
        output_dir=str(output_dir),
        vocabularies=vocab_files,
        batch_size=32,
        learning_rate=3e-3,
        max_epochs=4,
        patience=8,
        head_hidden_size=32,
        head_dropout=0.0,
        log_with="none",
        progress=False,
    )
    return FitArguments(**{**fields, **overrides})


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(cache, vocab_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    with torch_threads(1):
        fit(fit_args(out, vocab_files), cache)
    return out


def _partial_checkpoint(accelerator_self, output_dir, *args, **kwargs):
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "model.safetensors").write_bytes(b"\x08\x00\x00")  # cut short


def _is_best_head_temp(path, *args, **kwargs):
    """The temp file of the best head (best/), not of the final head written after training."""
    return Path(path).name.startswith(f".{head_module.HEAD_FILE}.") and Path(path).parent.name == "best"


def _is_checkpoint_publish(src, dst, *args, **kwargs):
    return Path(src).name == "checkpoint.tmp"


def _half_head(path, writer):
    Path(path).write_bytes(b"\x10\x00")


TRAINING_FAULTS = {
    # accelerate's save_state of the third epoch's checkpoint
    "save_state": ("accelerate.Accelerator", "save_state", lambda: DiskFull(3), _partial_checkpoint, 2),
    # the best head of the second improving epoch (its temp file, written through files.write_synced)
    "best head": (files, "write_synced", lambda: DiskFull(2, _is_best_head_temp), _half_head, None),
    # the rename that publishes the third checkpoint, after the previous one was moved to checkpoint.old
    "publish rename": (os, "replace", lambda: DiskFull(3, _is_checkpoint_publish), None, 2),
}


@pytest.mark.parametrize("fault", list(TRAINING_FAULTS))
def test_disk_full_during_checkpointing_keeps_the_last_checkpoint_and_resume_finishes(
    cache, vocab_files, straight_run, tmp_path, monkeypatch, fault
):
    import accelerate

    target, attribute, make_fault, partial, epochs_kept = TRAINING_FAULTS[fault]
    target = accelerate.Accelerator if target == "accelerate.Accelerator" else target
    disk = make_fault()
    out = tmp_path / "run"
    saved_heads: list[bytes] = []
    real_save_head = trainer.save_head

    def recording_save_head(head, fields, sizes, output_dir, extra):  # what the best head was before each save
        if Path(output_dir).name == "best" and (Path(output_dir) / head_module.HEAD_FILE).exists():
            saved_heads.append((Path(output_dir) / head_module.HEAD_FILE).read_bytes())
        return real_save_head(head, fields, sizes, output_dir, extra)

    monkeypatch.setattr(trainer, "save_head", recording_save_head)
    monkeypatch.setattr(target, attribute, disk.wrap(getattr(target, attribute), partial))
    with torch_threads(1), pytest.raises(OSError) as info:
        fit(fit_args(out, vocab_files), cache)
    monkeypatch.undo()
    assert disk.fired and info.value.errno == ENOSPC
    message = str(info.value)
    assert "could not write the checkpoint of epoch" in message and "--resume" in message, message
    assert "No space left on device" in message and "intact" in message, message

    # nothing half-written is left; the last complete checkpoint and the best head load
    assert not (out / "checkpoint.tmp").exists()
    assert not [p.name for p in (out / "best").iterdir() if p.name.startswith(".")]
    kept = next(
        out / name for name in ("checkpoint", "checkpoint.old") if (out / name / "trainer_state.json").is_file()
    )
    state = json.loads((kept / "trainer_state.json").read_text())
    if epochs_kept is not None:
        assert state["epoch"] == epochs_kept and f"{kept.name}/, {epochs_kept} epoch(s) done" in message
    head, saved = load_head(out / "best")  # loads: complete weights and config
    assert saved["epoch"] <= state["epoch"]  # from an epoch that ran: the kept checkpoint's or the failed one
    if fault == "best head":  # the failed save left the previous best head byte for byte
        assert saved_heads and (out / "best" / head_module.HEAD_FILE).read_bytes() == saved_heads[-1]

    with torch_threads(1):
        fit(fit_args(out, vocab_files, resume=True), cache)
    resumed, straight = metrics(out), metrics(straight_run)
    assert [r["epoch"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(resumed, straight):
        for key in ("train_loss", "val_macro_f1"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (fault, key, a["epoch"])
    assert (out / head_module.HEAD_FILE).read_bytes() == (straight_run / head_module.HEAD_FILE).read_bytes()
