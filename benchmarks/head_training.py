"""Part 4: head training throughput on cached MERT-95M-shaped features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import environment, load_average, quiet_warnings, timed


def bench_training(args) -> dict:
    load_before = load_average()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {}
    for device in devices:
        spec = json.dumps({"threads": args.threads, "epochs": 2 if args.quick else 4})
        env = dict(
            os.environ, CUDA_VISIBLE_DEVICES="" if device == "cpu" else os.environ.get("CUDA_VISIBLE_DEVICES", "0")
        )
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--training-child", spec],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"head training benchmark on {device} failed:\n{proc.stderr[-3000:]}")
        results[device] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  training {device}: {results[device]['segments_per_s']:.0f} segments/s")
    return {
        "devices": results,
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "environment": environment(),
        "method": "meralign.training.trainer.Trainer.train_epoch on cached MERT-95M-shaped features (4 layers x 768, "
        "float16, in memory), MLP head 768, two datasets (emotify, cal500) x 256 segments per step, "
        "triplet + push regulariser; the first epoch is a warm-up",
    }


class _MemoryCache:
    """What Trainer reads from a feature cache (`index`, `meta`, `features`, `select`), held in memory."""

    def __init__(self, index: list[dict], features: np.ndarray, meta: dict):
        self.index, self._features, self.meta = index, features, meta

    def features(self, pooling: str = "mean") -> np.ndarray:
        return self._features

    def select(self, datasets=None, splits=None) -> np.ndarray:
        return np.array(
            [
                i
                for i, e in enumerate(self.index)
                if (datasets is None or e["dataset"] in datasets) and (splits is None or e["split"] in splits)
            ],
            dtype=np.int64,
        )


def training_child(spec: dict) -> None:
    from meralign.training.arguments import FitArguments
    from meralign.training.trainer import Trainer
    from meralign.vocabularies import BUILTIN

    torch.set_num_threads(spec["threads"])
    rng = np.random.default_rng(0)
    index = []
    for dataset in ("emotify", "cal500"):
        labels = BUILTIN[dataset].labels
        for t in range(400):
            split = ("train",) * 8 + ("validation", "test")
            for s in range(6):
                index.append(
                    {
                        "track_id": f"{dataset}-{t}",
                        "dataset": dataset,
                        "split": split[t % 10],
                        "labels": [labels[t % len(labels)]],
                        "segment": s,
                        "start": 10.0 * s,
                        "end": 10.0 * s + 10,
                    }
                )
    features = rng.standard_normal((len(index), 4, 768)).astype(np.float16)
    cache = _MemoryCache(index, features, {"feature_layers": [3, 6, 9, 12], "hidden_size": 768})
    with tempfile.TemporaryDirectory() as tmp, quiet_warnings():
        fit_args = FitArguments(cache_dir=tmp, output_dir=tmp, log_with="none", progress=False, batch_size=256)
        trainer = Trainer(fit_args, cache)
        trainer.train_epoch(0)  # warm-up
        steps = len(trainer._epoch_batches(1)[0])
        seconds = 0.0
        for epoch in range(1, spec["epochs"]):
            seconds += timed(lambda: trainer.train_epoch(epoch))[0]
    segments = steps * 256 * 2 * (spec["epochs"] - 1)
    print(
        json.dumps(
            {
                "device": str(trainer.accelerator.device),
                "segments": segments,
                "seconds": round(seconds, 3),
                "segments_per_s": round(segments / seconds, 1),
                "steps_per_epoch": steps,
            }
        )
    )
