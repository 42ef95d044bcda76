"""Head training on cached MERT features: triplet loss + alignment regularisation, done correctly.

Differences from the method's reference code, on purpose:
- splits are by track (the cache's per-track splits), never contiguous segment ranges;
- every training dataset is used whole, with balanced sampling (each step draws one batch per dataset,
  cycling the smaller ones) instead of a double division by the upsampling factor;
- model selection and early stopping look only at the TRAINING datasets' validation splits;
- the regulariser sees one batch holding all training datasets, so it pushes apart clusters across
  vocabularies, which is what the alignment is for.

Resumable: every epoch ends with an atomic accelerate checkpoint; all randomness of an epoch is derived
from (seed, epoch), so a run resumed after a kill ends exactly where an uninterrupted one does (CPU).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, HubertConfig

from configuration_meralign import MERAlignConfig
from modeling_meralign import MERAlignHead
from meralign.losses import REGULARIZER_FORMS, alignment_regularizer, positive_negative_targets, primary_cluster_ids, triplet_cosine_loss
from meralign.utils import atomic_write_bytes, atomic_write_json, make_accelerator, parse_args, write_error
from meralign.vocabularies import Vocabulary, resolve_vocabulary

logger = logging.getLogger(__name__)

TARGETS = ("labels", "centers")
HEAD_FILE = "head.safetensors"
HEAD_CONFIG_FILE = "head_config.json"
STATE_FILE = "trainer_state.json"


@dataclass
class FitArguments:
    """Train the projection head on a feature cache (`python train.py fit --help`)."""

    cache_dir: str = field(metadata={"help": "Feature cache written by `train.py extract`."})
    output_dir: str = field(metadata={"help": "Where the head, its config, metrics and checkpoints go."})
    train_datasets: list[str] = field(default_factory=list, metadata={"help": "Dataset names in the cache to train on (default: all)."})
    vocabularies: list[str] = field(default_factory=list, metadata={"help": "Overrides as dataset=source (a built-in name or a label file); built-in and synthetic dataset names resolve by themselves."})
    pooling: str = field(default="mean", metadata={"help": "Cached time pooling to train on: 'mean' (ours) or 'first' (the paper's frame 0)."})
    head_type: str = field(default="mlp", metadata={"help": "'mlp' or 'attention' (a transformer over the selected layers)."})
    head_hidden_size: int = field(default=768, metadata={"help": "Width of the head."})
    head_num_layers: int = field(default=2, metadata={"help": "Transformer layers of the attention head."})
    head_num_heads: int = field(default=8, metadata={"help": "Attention heads of the attention head."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout inside the head."})
    targets: str = field(default="labels", metadata={"help": "Triplet targets: 'labels' (label embeddings) or 'centers' (their Mean Shift cluster centres, the paper's clustering baseline)."})
    regularizer: str = field(default="push", metadata={"help": "Alignment regulariser: 'push' (the paper's), 'pull_push', or 'none'."})
    alpha: float = field(default=2.5, metadata={"help": "Weight of the alignment regulariser (paper: 2.5)."})
    margin: float = field(default=1.0, metadata={"help": "Triplet margin on cosine similarity (paper: 1.0)."})
    n_negatives: int = field(default=5, metadata={"help": "Random non-positive labels averaged into each negative target (paper: 5)."})
    quantile: float | None = field(default=None, metadata={"help": "Mean Shift bandwidth quantile (ignored with --bandwidth); unset: the smallest quantile that keeps each label's nearest neighbour, which avoids both collapse and over-merging."})
    bandwidth: float | None = field(default=None, metadata={"help": "Mean Shift bandwidth; estimated from --quantile when unset."})
    hypothesis_template: str = field(default="{}", metadata={"help": "Text template for labels, e.g. 'music that sounds {}'; saved with the model."})
    batch_size: int = field(default=256, metadata={"help": "Segments per dataset per step (paper: 256)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    max_epochs: int = field(default=30, metadata={"help": "Upper bound on epochs (an epoch covers the largest training dataset once)."})
    patience: int = field(default=5, metadata={"help": "Early stopping: epochs without validation improvement."})
    seed: int = field(default=0, metadata={"help": "Seed of every random choice; a run is deterministic on CPU."})
    mixed_precision: str = field(default="no", metadata={"help": "accelerate mixed precision: 'no', 'bf16' or 'fp16'."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last complete checkpoint in output_dir."})
    log_with: str = field(default="tensorboard", metadata={"help": "'tensorboard' or 'none' (metrics.jsonl is always written)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        choices = {"pooling": ("mean", "first"), "targets": TARGETS, "regularizer": (*REGULARIZER_FORMS, "none"),
                   "mixed_precision": ("no", "bf16", "fp16"), "log_with": ("tensorboard", "none"), "head_type": ("mlp", "attention")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("batch_size", "max_epochs", "patience", "n_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------ data
@dataclass
class DatasetArrays:
    """One dataset of the cache, as arrays: features [n, layers, hidden], multi-hot labels [n, V]."""

    name: str
    vocabulary: Vocabulary
    features: torch.Tensor
    labels: torch.Tensor
    track_ids: list[str]
    splits: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)


def cache_datasets(cache) -> list[str]:
    """Names of the datasets a feature cache holds, sorted."""
    return sorted({entry["dataset"] for entry in cache.index})


def dataset_arrays(cache, name: str, vocabulary: Vocabulary, pooling: str) -> DatasetArrays:
    rows = cache.select(datasets=[name])
    if not len(rows):
        raise ValueError(f"dataset {name!r} has no segments in the cache (it holds: {cache_datasets(cache)})")
    index = [cache.index[i] for i in rows]
    labels = torch.zeros(len(rows), len(vocabulary), dtype=torch.bool)
    for r, entry in enumerate(index):
        for label in entry["labels"]:
            labels[r, vocabulary.index(label)] = True
    features = torch.from_numpy(np.ascontiguousarray(cache.features(pooling)[rows]))
    return DatasetArrays(name, vocabulary, features, labels, [e["track_id"] for e in index], np.array([e["split"] for e in index]))


def resolve_vocabularies(names: list[str], overrides: list[str], cache=None) -> dict[str, Vocabulary]:
    given = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--vocabularies entries must look like dataset=source, got {item!r}")
        key, source = item.split("=", 1)
        given[key] = source
    return {name: resolve_vocabulary(given.get(name, name), name=name, cache=cache) for name in names}


# ------------------------------------------------------------------------------------------ head
def head_config(cache_meta: dict, args: FitArguments) -> MERAlignConfig:
    """A config carrying what the head needs: the cached layers' count and width, the head's sizes."""
    layers = list(cache_meta["feature_layers"])
    audio = HubertConfig(hidden_size=int(cache_meta["hidden_size"]), num_hidden_layers=max(layers), num_attention_heads=1)
    text = BertConfig(hidden_size=int(cache_meta.get("projection_size", 384)))
    return MERAlignConfig(
        audio_config=audio, text_config=text, feature_layers=layers, pooling=args.pooling, head_type=args.head_type,
        head_hidden_size=args.head_hidden_size, head_num_layers=args.head_num_layers, head_num_heads=args.head_num_heads,
        head_dropout=args.head_dropout, hypothesis_template=args.hypothesis_template,
    )


def save_head(head: torch.nn.Module, config: MERAlignConfig, output_dir: Path, extra: dict) -> None:
    """The trained head: weights (safetensors) and the fields an export needs, written atomically."""
    from safetensors.torch import save

    output_dir.mkdir(parents=True, exist_ok=True)
    # serialised in memory (a head is a few MB), then temp file + fsync + rename: a failed write leaves the old head
    atomic_write_bytes(output_dir / HEAD_FILE, save({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}))
    fields = {k: getattr(config, k) for k in ("feature_layers", "pooling", "head_type", "head_hidden_size", "head_num_layers",
                                               "head_num_heads", "head_dropout", "hypothesis_template")}
    atomic_write_json(output_dir / HEAD_CONFIG_FILE, {**fields, "audio_hidden_size": config.audio_config.hidden_size, **extra})


def load_head(head_dir) -> tuple[MERAlignHead, dict]:
    """A trained head and its saved fields (feature_layers, pooling, logit_scale, calibration...)."""
    from safetensors.torch import load_file

    head_dir = Path(head_dir)
    if not (head_dir / HEAD_FILE).is_file():
        raise ValueError(f"head_dir {str(head_dir)!r} has no {HEAD_FILE}: run `train.py fit` first")
    saved = json.loads((head_dir / HEAD_CONFIG_FILE).read_text())
    meta = {"feature_layers": saved["feature_layers"], "hidden_size": saved["audio_hidden_size"]}
    args = FitArguments(cache_dir="", output_dir="", **{k: saved[k] for k in ("pooling", "head_type", "head_hidden_size", "head_num_layers", "head_num_heads", "head_dropout", "hypothesis_template")})
    head = MERAlignHead(head_config(meta, args))
    head.load_state_dict(load_file(str(head_dir / HEAD_FILE)))
    return head.eval(), saved


# --------------------------------------------------------------------------------------- scoring
@torch.inference_mode()
def cosine_scores(head: torch.nn.Module, features: torch.Tensor, label_embeddings: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """Cosine between projected segments and label embeddings, [n, V] (float64 numpy)."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    out = [head(features[i : i + batch_size].to(device, torch.float32)) @ label_embeddings.to(device).t() for i in range(0, len(features), batch_size)]
    head.train(was_training)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, len(label_embeddings)))


def fit_calibration(cosines: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Temperature for the softmax and (scale, bias) for independent sigmoid scores, on validation data.

    The softmax temperature minimises the cross-entropy against each segment's label distribution (its
    positives, equally weighted); the sigmoid is a one-feature logistic regression of label presence on
    the cosine. Both are fitted on the training datasets' validation splits only.
    """
    from scipy.optimize import minimize_scalar
    from sklearn.linear_model import LogisticRegression

    def nll(log_scale: float) -> float:
        total, count = 0.0, 0
        for cos, ref in zip(cosines, references):
            logits = math.exp(log_scale) * cos
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            target = ref / ref.sum(axis=1, keepdims=True)
            total -= (target * log_probs).sum()
            count += len(cos)
        return total / max(count, 1)

    log_scale = float(minimize_scalar(nll, bounds=(0.0, math.log(100.0)), method="bounded").x)
    x = np.concatenate([c.reshape(-1) for c in cosines])[:, None]
    y = np.concatenate([r.reshape(-1) for r in references]).astype(int)
    calibration = {"logit_scale": log_scale}
    if 0 < y.sum() < len(y):
        regression = LogisticRegression(C=1e4).fit(x, y)
        calibration.update(multilabel_scale=float(regression.coef_[0, 0]), multilabel_bias=float(regression.intercept_[0]))
    return calibration


# -------------------------------------------------------------------------------------- training
class Trainer:
    """Balanced multi-dataset head training with accelerate; see the module docstring."""

    def __init__(self, args: FitArguments, cache=None):
        from accelerate.utils import ProjectConfiguration

        from meralign.features import load_cache

        self.args = args
        self.output_dir = Path(args.output_dir)
        self.cache = cache or load_cache(args.cache_dir)
        names = args.train_datasets or cache_datasets(self.cache)
        vocabularies = resolve_vocabularies(names, args.vocabularies, self.cache)
        self.data = [dataset_arrays(self.cache, n, vocabularies[n], args.pooling) for n in names]
        for d in self.data:
            for split in ("train", "validation"):
                if not len(d.rows(split)):
                    raise ValueError(f"dataset {d.name!r} has no {split} segments: training needs both train and validation splits")
        log_with = None if args.log_with == "none" else args.log_with
        self.accelerator = make_accelerator(args.mixed_precision, log_with=log_with,
                                       project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")))
        self._prepare_targets()
        torch.manual_seed(args.seed)
        self.config = head_config(self.cache.meta, args)
        head = MERAlignHead(self.config)
        optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=max(1, args.patience // 2))
        self.head, self.optimizer = self.accelerator.prepare(head, optimizer)
        # The scheduler's state travels as JSON in trainer_state.json, not through register_for_checkpointing:
        # accelerate reloads registered objects with a pickle-based torch.load(weights_only=False).
        self.scheduler = scheduler

    def _prepare_targets(self) -> None:
        """Label embeddings per dataset, Mean Shift clusters over all training labels, triplet targets."""
        from meralign.alignment import cluster_labels, embed_labels

        args = self.args
        self.label_embeddings = [torch.from_numpy(embed_labels(list(d.vocabulary.labels), template=args.hypothesis_template)) for d in self.data]
        keys = [f"{d.name}:{label}" for d in self.data for label in d.vocabulary.labels]
        self.clusters = cluster_labels(torch.cat(self.label_embeddings).numpy(), keys, bandwidth=args.bandwidth, quantile=args.quantile)
        self.label_clusters = [torch.tensor([self.clusters.assignments[f"{d.name}:{label}"] for label in d.vocabulary.labels]) for d in self.data]
        if args.targets == "centers":
            centers = torch.nn.functional.normalize(torch.from_numpy(np.asarray(self.clusters.centers, dtype=np.float32)), dim=-1)
            self.targets = [centers[c] for c in self.label_clusters]
        else:
            self.targets = self.label_embeddings

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
        zs, clusters, triplet = [], [], 0.0
        for d, rows, targets, label_clusters in zip(self.data, picks, self.targets, self.label_clusters):
            z = self.head(d.features[rows].to(device, torch.float32))
            labels = d.labels[rows]
            positive, negative = positive_negative_targets(labels, targets, self.args.n_negatives, generator=generator)
            triplet = triplet + triplet_cosine_loss(z, positive.to(device), negative.to(device), margin=self.args.margin)
            zs.append(z)
            clusters.append(primary_cluster_ids(labels, label_clusters).to(device))
        if self.args.regularizer == "none":
            regularizer = torch.zeros((), device=device)
        else:
            regularizer = alignment_regularizer(torch.cat(zs), torch.cat(clusters), form=self.args.regularizer)
        return {"loss": triplet + self.args.alpha * regularizer, "triplet": triplet, "regularizer": regularizer}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        torch.manual_seed(self.args.seed * 1_000_003 + epoch)  # dropout of this epoch
        self.head.train()
        batches, generator = self._epoch_batches(epoch)
        sums = {"loss": 0.0, "triplet": 0.0, "regularizer": 0.0}
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
            state = self._resume(state)
        elif acc.is_main_process and (self.output_dir / STATE_FILE).exists():
            raise ValueError(f"output_dir {str(self.output_dir)!r} holds a previous run: pass --resume to continue it, or choose another folder")
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if acc.log_with:
            acc.init_trackers("meralign", config={k: v for k, v in asdict(args).items() if isinstance(v, (int, float, str, bool))})
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
            self._checkpoint(state, improved)
            if os.environ.get("MERALIGN_FIT_SLEEP"):  # test hook: time to kill a run between epochs
                time.sleep(float(os.environ["MERALIGN_FIT_SLEEP"]))
        return self._finish(state)

    def _log(self, record: dict, improved: bool) -> None:
        acc = self.accelerator
        if acc.log_with:
            acc.log({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        if acc.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            mark = " *" if improved else ""
            print(f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  triplet {record['train_triplet']:.4f}  "
                  f"reg {record['train_regularizer']:.4f}  val macro-F1 {record['val_macro_f1']:.4f}{mark}", flush=True)

    def _checkpoint(self, state: dict, improved: bool) -> None:
        """Best head (atomic), then the full training state into a fresh folder renamed into place.

        A failed write (disk full...) leaves the previous checkpoint and best head as they were, removes the
        partial folder and raises an OSError saying so (same errno)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        tmp = self.output_dir / "checkpoint.tmp"
        try:
            if improved and acc.is_main_process:
                save_head(acc.unwrap_model(self.head), self.config, self.output_dir / "best", {"epoch": state["best_epoch"]})
            if acc.is_main_process and tmp.exists():
                shutil.rmtree(tmp)
            acc.wait_for_everyone()
            acc.save_state(str(tmp))
            acc.wait_for_everyone()
            if acc.is_main_process:
                atomic_write_json(tmp / STATE_FILE, {**state, "scheduler": self.scheduler.state_dict()})
                self._publish_checkpoint(tmp, state)
        except OSError as err:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(err, f"could not write the checkpoint of epoch {state['epoch'] - 1} in {str(self.output_dir)!r}",
                              f"{self._last_checkpoint_note()}: fix the cause (e.g. free disk space) and rerun with --resume") from err
        acc.wait_for_everyone()

    def _publish_checkpoint(self, tmp: Path, state: dict) -> None:
        old = self.output_dir / "checkpoint.old"
        final = self.output_dir / "checkpoint"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)  # killed between the two renames: _resume falls back to checkpoint.old
        shutil.rmtree(old, ignore_errors=True)
        atomic_write_json(self.output_dir / STATE_FILE, state)

    def _last_checkpoint_note(self) -> str:
        """What survives a failed checkpoint, for the error message."""
        for name in ("checkpoint", "checkpoint.old"):
            path = self.output_dir / name / STATE_FILE
            if path.is_file():
                try:
                    epochs = json.loads(path.read_text())["epoch"]
                except (OSError, ValueError, KeyError):
                    continue
                return f"the previous checkpoint ({name}/, {epochs} epoch(s) done) and best head are intact"
        return "no earlier checkpoint exists, so --resume starts from scratch"

    def _resume(self, state: dict) -> dict:
        final = self.output_dir / "checkpoint"
        if not (final / STATE_FILE).is_file():
            old = self.output_dir / "checkpoint.old"  # killed between the two renames
            final = old if (old / STATE_FILE).is_file() else None
        if final is None:
            logger.warning("--resume: no complete checkpoint in %s, starting from scratch", self.output_dir)
            return state
        self.accelerator.load_state(str(final))
        state = json.loads((final / STATE_FILE).read_text())
        scheduler_state = state.pop("scheduler", None)
        if scheduler_state is not None:
            self.scheduler.load_state_dict(scheduler_state)
        else:  # a checkpoint from before the scheduler state was saved as JSON
            logger.warning("--resume: %s holds no learning-rate scheduler state; the scheduler starts afresh", final)
        # metrics.jsonl may hold epochs logged after this checkpoint: keep only the ones it covers
        log = self.output_dir / "metrics.jsonl"
        if self.accelerator.is_main_process and log.exists():
            kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["epoch"] < state["epoch"]]
            log.write_text("".join(line + "\n" for line in kept))
        print(f"resumed from epoch {state['epoch']} (best val macro-F1 {state['best']:.4f} at epoch {state['best_epoch']})", flush=True)
        return state

    def _finish(self, state: dict) -> dict:
        """Calibrate the best head on validation data, save it to output_dir, write the summary."""
        acc = self.accelerator
        acc.end_training()
        summary = {"best_val_macro_f1": state["best"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"]}
        if not acc.is_main_process:
            return summary
        head, _ = load_head(self.output_dir / "best")
        cosines = [cosine_scores(head, d.features[d.rows("validation")], e) for d, e in zip(self.data, self.label_embeddings)]
        references = [d.labels[d.rows("validation")].numpy().astype(float) for d in self.data]
        calibration = fit_calibration(cosines, references)
        extra = {**summary, **calibration, "train_datasets": [d.name for d in self.data],
                 "alignment": {"bandwidth": self.clusters.bandwidth, "n_clusters": self.clusters.n_clusters, "degenerate": self.clusters.degenerate}}
        save_head(head, self.config, self.output_dir, extra)
        plot_curves(self.output_dir / "metrics.jsonl", self.output_dir / "training_curves.png")
        return {**summary, **calibration}


def plot_curves(metrics_jsonl: Path, png: Path) -> None:
    """Training loss and validation macro F1 per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    if not records:
        return
    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("train_loss", "train_triplet", "train_regularizer"):
        left.plot(epochs, [r[key] for r in records], label=key.replace("train_", ""))
    left.set_xlabel("epoch")
    left.set_title("training loss")
    left.legend()
    for key in sorted(k for k in records[0] if k.startswith("val_macro_f1")):
        right.plot(epochs, [r[key] for r in records], label=key.replace("val_macro_f1", "mean").replace("mean/", ""))
    right.set_xlabel("epoch")
    right.set_title("validation macro F1 (training datasets)")
    right.legend(fontsize=7)
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)


def fit(args: FitArguments, cache=None) -> dict:
    return Trainer(args, cache).fit()


def fit_main(argv: list[str] | None = None) -> int:
    (args,) = parse_args(FitArguments, argv)
    summary = fit(args)
    print(json.dumps(summary, indent=2))
    return 0
