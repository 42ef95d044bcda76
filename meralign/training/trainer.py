"""Head training on cached MERT features: triplet loss + alignment regularisation (meralign/losses.py), done
correctly.

Differences from the method's reference code, on purpose:
- splits are by track (the cache's per-track splits), never contiguous segment ranges;
- every training dataset is used whole, with balanced sampling (each step draws one batch per dataset,
  cycling the smaller ones) instead of a double division by the upsampling factor;
- model selection and early stopping look only at the TRAINING datasets' validation splits;
- the regulariser sees one batch holding all training datasets, so it pushes apart clusters across
  vocabularies, which is what the alignment is for.

Resumable: every epoch ends with an atomic checkpoint (checkpoints.py); all randomness of an epoch is derived
from (seed, epoch), so a run resumed after a kill ends exactly where an uninterrupted one does (CPU).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from meralign.arguments import parse_args
from meralign.features.datasets import CacheDatasets
from meralign.head import build_head, head_fields, load_head, save_head
from meralign.losses import DatasetBatch, MERAlignLoss
from meralign.runtime import make_accelerator
from meralign.training.arguments import FitArguments
from meralign.training.calibration import (
    cosine_scores,
    embedding_cosines,
    fit_affect_calibration,
    fit_calibration,
    projected,
)
from meralign.training.checkpoints import Checkpoints
from meralign.training.curves import plot_curves

# Called after every epoch with its record (epoch, losses, validation F1, lr): progress displays, or a test
# that interrupts a run between epochs.
EpochCallback = Callable[[dict], None]


class Trainer:
    """Balanced multi-dataset head training with accelerate; see the module docstring."""

    def __init__(self, args: FitArguments, datasets=None, callbacks: Sequence[EpochCallback] = ()):
        from accelerate.utils import ProjectConfiguration

        self.args = args
        self.callbacks = list(callbacks)
        self.output_dir = Path(args.output_dir)
        self.datasets = CacheDatasets.of(datasets if datasets is not None else args.cache_dir)
        names = args.train_datasets or self.datasets.names()
        vocabularies = self.datasets.vocabularies(names, args.vocabularies)
        self.data = [self.datasets.get(n, vocabularies[n], args.pooling) for n in names]
        for d in self.data:
            for split in ("train", "validation"):
                if not len(d.rows(split)):
                    raise ValueError(
                        f"dataset {d.name!r} has no {split} segments: training needs both train and validation splits"
                    )
        log_with = None if args.log_with == "none" else args.log_with
        project = ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs"))
        self.accelerator = make_accelerator(args.mixed_precision, log_with=log_with, project_config=project)
        self.checkpoints = Checkpoints(self.output_dir, self.accelerator)
        self._prepare_targets()
        meta = self.datasets.meta
        self.fields = head_fields(args, meta["feature_layers"], self.label_space)
        self.sizes = (int(meta["hidden_size"]), int(self.label_embeddings[0].shape[1]))
        torch.manual_seed(args.seed)
        head = build_head(self.fields, *self.sizes)
        optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=max(1, args.patience // 2)
        )
        self.head, self.optimizer = self.accelerator.prepare(head, optimizer)
        self.loss = MERAlignLoss(
            margin=args.margin,
            alpha=args.alpha,
            n_negatives=args.n_negatives,
            regularizer=args.regularizer,
            objective=args.objective,
            temperature=args.temperature,
            affect_weight=args.affect_weight,
            affect_map=self.affect_map,
        )

    def _prepare_targets(self) -> None:
        """Label embeddings per dataset, Mean Shift clusters over all training labels, targets."""
        from meralign.alignment.clustering import cluster_labels
        from meralign.alignment.label_space import label_vectors, resolve_label_space

        args = self.args
        self.label_space = resolve_label_space(args.label_space)
        self.label_embeddings = [
            torch.from_numpy(
                label_vectors(list(d.vocabulary.labels), self.label_space, template=args.hypothesis_template)
            )
            for d in self.data
        ]
        keys = [f"{d.name}:{label}" for d in self.data for label in d.vocabulary.labels]
        self.clusters = cluster_labels(
            torch.cat(self.label_embeddings).numpy(), keys, bandwidth=args.bandwidth, quantile=args.quantile
        )
        self.label_clusters = [
            torch.tensor([self.clusters.assignments[f"{d.name}:{label}"] for label in d.vocabulary.labels])
            for d in self.data
        ]
        self.affect_map, self.label_affect = None, [None] * len(self.data)
        if args.affect_weight > 0:
            self._prepare_affect()
        if args.targets == "centers":
            centers = torch.from_numpy(np.asarray(self.clusters.centers, dtype=np.float32))
            centers = torch.nn.functional.normalize(centers, dim=-1)
            self.targets = [centers[c] for c in self.label_clusters]
        else:
            self.targets = self.label_embeddings

    def _prepare_affect(self) -> None:
        """For the affect loss: the map from a unit vector to its valence/arousal, and each label's."""
        from scoring_meralign import affect_scale, has_affect_axes

        if self.label_space is None or not has_affect_axes(self.label_space):
            raise ValueError("--affect_weight > 0 needs a label space with valence and arousal axes")
        weight, bias = (torch.tensor(x, dtype=torch.float32) for x in affect_scale(self.label_space))
        self.affect_map = (weight, bias)
        self.label_affect = [e.float() @ weight + bias for e in self.label_embeddings]

    # ---------------------------------------------------------------------------------- one epoch
    def _epoch_batches(self, epoch: int) -> tuple[list[list[torch.Tensor]], torch.Generator]:
        """Per step, one index batch per dataset; this process's share. Derived from (seed, epoch) only."""
        generator = torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)
        bs = self.args.batch_size
        train_rows = [torch.from_numpy(d.rows("train")) for d in self.data]
        steps = max(math.ceil(len(rows) / bs) for rows in train_rows)
        perms = [rows[torch.randperm(len(rows), generator=generator)] for rows in train_rows]
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        batches = []
        for step in range(steps):
            picks = []
            for perm in perms:  # smaller datasets cycle through their permutation: balanced sampling
                positions = torch.arange(step * bs, (step + 1) * bs) % len(perm)
                picks.append(perm[positions][rank::world])
            batches.append(picks)
        return batches, generator

    def _step_loss(self, picks: list[torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = self.accelerator.device
        batches = [
            DatasetBatch(
                self.head(d.features[rows].to(device, torch.float32)), d.labels[rows], targets, label_clusters, affect
            )
            for d, rows, targets, label_clusters, affect in zip(
                self.data, picks, self.targets, self.label_clusters, self.label_affect
            )
        ]
        return self.loss(batches, generator=generator)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        torch.manual_seed(self.args.seed * 1_000_003 + epoch)  # dropout of this epoch
        self.head.train()
        batches, generator = self._epoch_batches(epoch)
        sums = {"loss": 0.0, "objective": 0.0, "regularizer": 0.0, "affect": 0.0}
        show = self.args.progress and self.accelerator.is_local_main_process
        for picks in tqdm(batches, desc=f"epoch {epoch}", disable=not show, leave=False, file=sys.stdout):
            with self.accelerator.autocast():
                parts = self._step_loss(picks, generator)
            self.accelerator.backward(parts["loss"])
            self.optimizer.step()
            self.optimizer.zero_grad()
            for key in sums:
                sums[key] += float(parts[key].detach())
        return {f"train_{k}": v / len(batches) for k, v in sums.items()}

    def validate(self) -> dict[str, float]:
        """Macro F1 at each training dataset's top-k on its validation split (segment level), and the mean."""
        from meralign.metrics import multilabel_topk_metrics

        head = self.accelerator.unwrap_model(self.head)
        result = {}
        for d, embeds in zip(self.data, self.label_embeddings):
            rows = d.rows("validation")
            scores = cosine_scores(head, d.features[rows], embeds)
            metrics = multilabel_topk_metrics(scores, d.labels[rows].numpy().astype(int), top_k=d.vocabulary.top_k)
            result[f"val_macro_f1/{d.name}"] = metrics["macro_f1"]
        result["val_macro_f1"] = float(np.mean([result[f"val_macro_f1/{d.name}"] for d in self.data]))
        return result

    # ------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        args, acc = self.args, self.accelerator
        state = {"epoch": 0, "best": -1.0, "best_epoch": -1, "bad_epochs": 0}
        if args.resume:
            state = self.checkpoints.resume(state, self.scheduler)
        elif acc.is_main_process and self.checkpoints.exists():
            raise ValueError(
                f"output_dir {str(self.output_dir)!r} holds a previous run: pass --resume to continue "
                "it, or choose another folder"
            )
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if acc.log_with:
            config = {k: v for k, v in asdict(args).items() if isinstance(v, (int, float, str, bool))}
            acc.init_trackers("meralign", config=config)
        while state["epoch"] < args.max_epochs and state["bad_epochs"] < args.patience:
            epoch = state["epoch"]
            record = {"epoch": epoch, **self.train_epoch(epoch), **self.validate()}
            self.scheduler.step(record["val_macro_f1"])
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            improved = record["val_macro_f1"] > state["best"] + 1e-6
            if improved:
                state.update(best=record["val_macro_f1"], best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            self._log(record, improved)
            self.checkpoints.save(state, self.scheduler, self._best_saver(state) if improved else None)
            for callback in self.callbacks:
                callback(record)
        return self._finish(state)

    def _best_saver(self, state: dict) -> Callable[[], None]:
        head = self.accelerator.unwrap_model(self.head)
        return lambda: save_head(
            head, self.fields, self.sizes, self.output_dir / "best", {"epoch": state["best_epoch"]}
        )

    def _log(self, record: dict, improved: bool) -> None:
        acc = self.accelerator
        if acc.log_with:
            acc.log({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        if acc.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            mark = " *" if improved else ""
            print(
                f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  "
                f"objective {record['train_objective']:.4f}  reg {record['train_regularizer']:.4f}  "
                f"val macro-F1 {record['val_macro_f1']:.4f}{mark}",
                flush=True,
            )

    def _anchors(self) -> tuple[list[str], np.ndarray]:
        """The training labels, each once (first appearance), and their label-space vectors: what valence and
        arousal are read through (scoring_meralign.affect_readout)."""
        rows = {}
        for d, vectors in zip(self.data, self.label_embeddings):
            for label, vector in zip(d.vocabulary.labels, vectors.numpy()):
                rows.setdefault(label, vector)
        return list(rows), np.stack(list(rows.values()))

    def _finish(self, state: dict) -> dict:
        """Calibrate the best head on validation data, save it to output_dir, write the summary."""
        acc = self.accelerator
        acc.end_training()
        summary = {"best_val_macro_f1": state["best"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"]}
        if not acc.is_main_process:
            return summary
        head, _ = load_head(self.output_dir / "best")
        audio = [projected(head, d.features[d.rows("validation")]) for d in self.data]  # once, for both fits
        cosines = [embedding_cosines(a, e) for a, e in zip(audio, self.label_embeddings)]
        references = [d.labels[d.rows("validation")].numpy().astype(float) for d in self.data]
        calibration = fit_calibration(cosines, references)
        if self.label_space is not None:
            anchors, anchor_vectors = self._anchors()
            maps = fit_affect_calibration(
                audio, self.label_embeddings, references, self.label_space, anchor_vectors, calibration["logit_scale"]
            )
            calibration["affect_calibration"] = {**maps, "anchors": anchors}
        alignment = {
            "bandwidth": self.clusters.bandwidth,
            "n_clusters": self.clusters.n_clusters,
            "degenerate": self.clusters.degenerate,
        }
        extra = {**summary, **calibration, "train_datasets": [d.name for d in self.data], "alignment": alignment}
        save_head(head, self.fields, self.sizes, self.output_dir, extra)
        plot_curves(self.output_dir / "metrics.jsonl", self.output_dir / "training_curves.png")
        return {**summary, **calibration}


def fit(args: FitArguments, datasets=None, callbacks: Sequence[EpochCallback] = ()) -> dict:
    """Train a head (see `Trainer`). `datasets`: a CacheDatasets shared between runs (the protocol's), a loaded
    cache, or None (`args.cache_dir`)."""
    return Trainer(args, datasets, callbacks).fit()


def fit_main(argv: list[str] | None = None) -> int:
    (args,) = parse_args(FitArguments, argv)
    print(json.dumps(fit(args), indent=2))
    return 0
