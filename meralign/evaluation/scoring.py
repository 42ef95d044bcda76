"""Scoring a trained head on one dataset split: segment and song level, every metric beside its chance level.

Metrics come from the local `evaluate` module (meralign/metrics/multilabel_emotion): macro P/R/F1 at the
dataset's top-k, ROC-AUC and PR-AUC, at segment level and at song level (mean of segment scores, and the
paper's majority vote). Chance: random top-k (exact expectation) and the frequency prior (training label
frequencies in-domain; for a zero-shot vocabulary no training frequencies exist, so the prior is the test
labels' own frequencies: an optimistic baseline, labelled as such).
"""

from __future__ import annotations

import torch

from meralign.evaluation.records import SUMMARY_KEYS, SettingRecord
from meralign.features.datasets import DatasetArrays
from meralign.metrics import aggregate_songs, chance_baselines, load_metric
from meralign.metrics.bootstrap import interval, macro_f1_samples, roc_auc_samples, track_weights
from meralign.training.calibration import cosine_scores

_METRIC = None


def _metric():
    """The evaluate module, loaded once per process (by local path: works offline)."""
    global _METRIC
    if _METRIC is None:
        _METRIC = load_metric()
    return _METRIC


def score_split(head, fields: dict, data: DatasetArrays, split: str, prior=None, vocabulary=None) -> dict:
    """Metrics of one dataset split ("train", "validation", "test" or "all") at segment and song level, each with
    a 95% bootstrap interval over tracks. `fields`: the head's saved fields (its `label_space`, or its
    `hypothesis_template` without one). `vocabulary`: other words for the dataset's labels, one per label in
    the same order (a relabelling vocabulary such as the demo's everyday words); default: the dataset's own."""
    from meralign.alignment.label_space import label_vectors

    vocabulary = vocabulary or data.vocabulary
    if len(vocabulary) != len(data.vocabulary):
        raise ValueError(
            f"vocabulary {vocabulary.name!r} has {len(vocabulary)} labels but dataset {data.name!r} "
            f"has {len(data.vocabulary)}: a relabelling names each label once, in order"
        )
    rows = data.rows(split)
    if not len(rows):
        raise ValueError(f"dataset {data.name!r} has no {split!r} segments in the cache")
    labels = label_vectors(list(vocabulary.labels), fields.get("label_space"), template=fields["hypothesis_template"])
    embeds = torch.from_numpy(labels)
    scores = cosine_scores(head, data.features[rows], embeds)
    references = data.labels[rows].numpy().astype(int)
    track_ids = [data.track_ids[i] for i in rows]
    k, labels, metric = vocabulary.top_k, list(vocabulary.labels), _metric()
    result = {
        "dataset": data.name,
        "vocabulary": vocabulary.name,
        "split": split,
        "top_k": k,
        "n_segments": int(len(rows)),
        "labels": labels,
    }
    result["segment"] = metric.compute(predictions=scores, references=references, top_k=k, labels=labels)
    result["intervals"] = {"segment": _intervals(scores, references, k, track_ids)}
    first_row = {}
    for i, track in enumerate(track_ids):
        first_row.setdefault(track, i)
    song_refs = references[[first_row[t] for t in dict.fromkeys(track_ids)]]
    for method in ("mean", "vote"):
        _, song_scores = aggregate_songs(scores, track_ids, method=method, top_k=k)
        result[f"song_{method}"] = metric.compute(
            predictions=song_scores, references=song_refs, top_k=k, labels=labels
        )
        result["intervals"][f"song_{method}"] = _intervals(song_scores, song_refs, k, range(len(song_refs)))
    result["n_tracks"] = int(len(song_refs))
    result["chance"] = {
        "segment": chance_baselines(references, k, prior=prior),
        "song": chance_baselines(song_refs, k, prior=prior),
    }
    return result


def _intervals(scores, references, top_k: int, tracks) -> dict[str, list[float]]:
    """95% bootstrap intervals over tracks of macro F1 and macro ROC-AUC (meralign.metrics.bootstrap)."""
    weights = track_weights(list(tracks))
    return {
        "macro_f1": interval(macro_f1_samples(scores, references, top_k, weights)),
        "roc_auc": interval(roc_auc_samples(scores, references, weights)),
    }


def to_record(name: str, train: list[str], result: dict, kind: str, **extra) -> SettingRecord:
    """The protocol row of a `score_split` result; `extra` (e.g. which model and label space) is kept with it."""
    chance = {}
    for group, baselines in result["chance"].items():
        random_scores = baselines["random_scores"]
        chance[group] = {
            "macro_f1": {
                "random_topk": baselines["random_topk"]["macro_f1"],
                "frequency_prior": baselines["frequency_prior"]["macro_f1"],
            },
            "roc_auc": {"chance": random_scores["roc_auc_macro"]},
            "pr_auc": {"chance": random_scores["pr_auc_macro"]},
        }
    given = result["chance"]["segment"]["frequency_prior"]["prior"] == "given"
    return SettingRecord(
        name=name,
        train=list(train),
        test=result["vocabulary"],
        kind=kind,
        top_k=result["top_k"],
        n_segments=result["n_segments"],
        n_tracks=result["n_tracks"],
        metrics={
            level: {short: float(result[level][long]) for short, long in SUMMARY_KEYS.items()}
            for level in ("segment", "song_mean", "song_vote")
        },
        chance=chance,
        intervals=result["intervals"],
        prior="training labels" if given else "test labels (optimistic)",
        extra={"tracks": result["dataset"], **extra},
    )
