"""Evaluation of trained heads, and the leave-one-dataset-out protocol, every score beside its chance level.

Metrics come from the local `evaluate` module (meralign/metrics/multilabel_emotion): macro P/R/F1 at the
dataset's top-k, ROC-AUC and PR-AUC, at segment level and at song level (mean of segment scores, and the
paper's majority vote). Chance: random top-k (exact expectation) and the frequency prior (training label
frequencies in-domain; for a zero-shot vocabulary no training frequencies exist, so the prior is the test
labels' own frequencies: an optimistic baseline, labelled as such).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from meralign.metrics import aggregate_songs, chance_baselines, load_metric
from meralign.training import FitArguments, cache_datasets, cosine_scores, dataset_arrays, fit, load_head, resolve_vocabularies
from meralign.utils import atomic_write_json, atomic_write_text, parse_args

SUMMARY_KEYS = {"macro_f1": "macro_f1", "macro_precision": "macro_precision", "macro_recall": "macro_recall",
                "micro_f1": "micro_f1", "roc_auc": "roc_auc_macro", "pr_auc": "pr_auc_macro"}

_METRIC = None


def _metric():
    """The evaluate module, loaded once per process (by local path: works offline)."""
    global _METRIC
    if _METRIC is None:
        _METRIC = load_metric()
    return _METRIC


def _summary(metrics: dict) -> dict:
    return {short: metrics[long] for short, long in SUMMARY_KEYS.items()}


def score_split(head, template: str, cache, name: str, vocabulary, split: str, pooling: str, prior=None) -> dict:
    """Metrics of one dataset split at segment and song level, with chance baselines."""
    from meralign.alignment import embed_labels
    import torch

    data = dataset_arrays(cache, name, vocabulary, pooling)
    rows = data.rows(split) if split != "all" else np.arange(len(data.splits))
    if not len(rows):
        raise ValueError(f"dataset {name!r} has no {split!r} segments in the cache")
    embeds = torch.from_numpy(embed_labels(list(vocabulary.labels), template=template))
    scores = cosine_scores(head, data.features[rows], embeds)
    references = data.labels[rows].numpy().astype(int)
    track_ids = [data.track_ids[i] for i in rows]
    k = vocabulary.top_k
    metric = _metric()
    result = {"dataset": name, "split": split, "top_k": k, "n_segments": int(len(rows)), "labels": list(vocabulary.labels)}
    result["segment"] = metric.compute(predictions=scores, references=references, top_k=k, labels=list(vocabulary.labels))
    first_row = {}
    for i, track in enumerate(track_ids):
        first_row.setdefault(track, i)
    song_refs = references[[first_row[t] for t in dict.fromkeys(track_ids)]]
    for method in ("mean", "vote"):
        _, song_scores = aggregate_songs(scores, track_ids, method=method, top_k=k)
        result[f"song_{method}"] = metric.compute(predictions=song_scores, references=song_refs, top_k=k, labels=list(vocabulary.labels))
    result["n_tracks"] = int(len(song_refs))
    result["chance"] = {
        "segment": chance_baselines(references, k, prior=prior),
        "song": chance_baselines(song_refs, k, prior=prior),
    }
    return result


def _training_prior(cache, name: str, vocabulary, pooling: str) -> np.ndarray:
    data = dataset_arrays(cache, name, vocabulary, pooling)
    return data.labels[data.rows("train")].float().mean(dim=0).numpy()


def setting_record(name: str, train: list[str], result: dict, kind: str) -> dict:
    """One row of the protocol table: the summary the README, the model card and results.json use."""
    chance = result["chance"]
    return {
        "name": name, "train": train, "test": result["dataset"], "kind": kind, "top_k": result["top_k"],
        "n_segments": result["n_segments"], "n_tracks": result["n_tracks"],
        "metrics": {level: _summary(result[level]) for level in ("segment", "song_mean", "song_vote")},
        "chance": {
            "random_topk": {"macro_f1": chance["segment"]["random_topk"]["macro_f1"], "song_macro_f1": chance["song"]["random_topk"]["macro_f1"]},
            "frequency_prior": {"macro_f1": chance["segment"]["frequency_prior"]["macro_f1"],
                                "song_macro_f1": chance["song"]["frequency_prior"]["macro_f1"],
                                "prior": chance["segment"]["frequency_prior"]["prior"]},
            "roc_auc": chance["segment"]["random_scores"]["roc_auc_macro"],
            "pr_auc": chance["segment"]["random_scores"]["pr_auc_macro"],
        },
    }


# ------------------------------------------------------------------------------------ evaluate CLI
@dataclass
class EvaluateArguments:
    """Score a trained head on cached features (`python train.py evaluate --help`)."""

    cache_dir: str = field(metadata={"help": "Feature cache written by `train.py extract`."})
    head_dir: str = field(metadata={"help": "Output folder of `train.py fit`."})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Datasets to score (default: all in the cache)."})
    split: str = field(default="test", metadata={"help": "'train', 'validation', 'test' or 'all'."})
    vocabularies: list[str] = field(default_factory=list, metadata={"help": "Overrides as dataset=source."})
    output: str | None = field(default=None, metadata={"help": "Write the full results here as JSON."})


def evaluate_main(argv: list[str] | None = None) -> int:
    from meralign.features import load_cache

    (args,) = parse_args(EvaluateArguments, argv)
    cache = load_cache(args.cache_dir)
    head, saved = load_head(args.head_dir)
    names = args.datasets or cache_datasets(cache)
    vocabularies = resolve_vocabularies(names, args.vocabularies, cache)
    trained_on = saved.get("train_datasets", [])
    records, details = [], []
    for name in names:
        in_domain = name in trained_on
        prior = _training_prior(cache, name, vocabularies[name], saved["pooling"]) if in_domain else None
        result = score_split(head, saved["hypothesis_template"], cache, name, vocabularies[name], args.split, saved["pooling"], prior)
        details.append(result)
        records.append(setting_record(f"{'+'.join(trained_on)} -> {name}", trained_on, result, "in-domain" if in_domain else "zero-shot"))
    print(results_markdown(records))
    if args.output:
        atomic_write_json(args.output, {"settings": records, "details": details})
    return 0


# ------------------------------------------------------------------------------------ the protocol
@dataclass
class ProtocolArguments:
    """Leave-one-dataset-out: for each dataset, train on the others and test zero-shot on it."""

    datasets: list[str] = field(default_factory=list, metadata={"help": "The datasets that take turns being held out (default: all in the cache, minus --zero_shot_datasets)."})
    zero_shot_datasets: list[str] = field(default_factory=list, metadata={"help": "Vocabularies never trained on; every model is scored on them."})
    eval_split: str = field(default="test", metadata={"help": "Split scored for in-domain and held-out datasets ('test' or 'all'); zero-shot-only datasets are scored on all their tracks."})


def run_protocol(fit_args: FitArguments, protocol: ProtocolArguments, cache=None) -> dict:
    from meralign.features import load_cache

    cache = cache or load_cache(fit_args.cache_dir)
    zero_shot_only = list(protocol.zero_shot_datasets)
    names = protocol.datasets or sorted(set(cache_datasets(cache)) - set(zero_shot_only))
    if len(names) < 2:
        raise ValueError(f"the protocol needs at least 2 datasets to hold out in turn, got {names}")
    vocabularies = resolve_vocabularies(names + zero_shot_only, fit_args.vocabularies, cache)
    root = Path(fit_args.output_dir)
    records, details = [], []
    for held_out in names:
        train = [n for n in names if n != held_out]
        run_dir = root / f"heldout-{held_out}"
        print(f"\n=== train on {' + '.join(train)}; zero-shot test on {held_out} ===", flush=True)
        fit(replace(fit_args, train_datasets=train, output_dir=str(run_dir)), cache)
        head, saved = load_head(run_dir)
        template, pooling = saved["hypothesis_template"], saved["pooling"]
        tag = f"train {'+'.join(train)}"
        for name in train:
            prior = _training_prior(cache, name, vocabularies[name], pooling)
            result = score_split(head, template, cache, name, vocabularies[name], protocol.eval_split, pooling, prior)
            records.append(setting_record(f"{tag}, test {name}", train, result, "in-domain"))
            details.append(result)
        for name, split in [(held_out, protocol.eval_split)] + [(z, "all") for z in zero_shot_only]:
            result = score_split(head, template, cache, name, vocabularies[name], split, pooling)
            records.append(setting_record(f"{tag}, test {name}", train, result, "zero-shot"))
            details.append(result)
    summary = {"settings": records, "notes": PROTOCOL_NOTES, "fit_arguments": {k: v for k, v in vars(fit_args).items()}}
    atomic_write_json(root / "protocol.json", summary)
    atomic_write_json(root / "protocol_details.json", details)
    atomic_write_text(root / "protocol.md", results_markdown(records) + "\n" + PROTOCOL_NOTES + "\n")
    return summary


PROTOCOL_NOTES = (
    "Macro F1 at the dataset's top-k. Splits are by track; model selection used only the training "
    "datasets' validation splits. Chance: random top-k is the exact expectation of drawing k labels "
    "uniformly per row; the frequency prior predicts the k most frequent training labels (for zero-shot "
    "vocabularies, the test labels' own frequencies: optimistic). ROC-AUC chance is 0.5; PR-AUC chance "
    "is the mean label prevalence."
)


def results_markdown(records: list[dict]) -> str:
    """The protocol table: each score beside its chance baselines."""
    lines = [
        "| setting | kind | k | macro-F1 segment | song (mean) | song (vote) | chance: random top-k | chance: frequency prior | ROC-AUC | PR-AUC (chance) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        m, c = r["metrics"], r["chance"]
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['top_k']} | {m['segment']['macro_f1']:.3f} | {m['song_mean']['macro_f1']:.3f} | "
            f"{m['song_vote']['macro_f1']:.3f} | {c['random_topk']['macro_f1']:.3f} | {c['frequency_prior']['macro_f1']:.3f} | "
            f"{m['segment']['roc_auc']:.3f} | {m['segment']['pr_auc']:.3f} ({c['pr_auc']:.3f}) |"
        )
    return "\n".join(lines)


def protocol_main(argv: list[str] | None = None) -> int:
    fit_args, protocol = parse_args([FitArguments, ProtocolArguments], argv)
    summary = run_protocol(fit_args, protocol)
    print("\n" + results_markdown(summary["settings"]))
    return 0
