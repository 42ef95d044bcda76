"""95% bootstrap intervals over tracks for the scores the project reports (macro F1 at top-k, macro ROC-AUC).

Why over tracks: a track's segments are not independent draws, so resampling segments would make the interval
too narrow. Each resample draws tracks with replacement and weighs every segment by how often its track was
drawn; the metrics are computed for all resamples at once from weighted counts (no loop over resamples), with
the conventions of multilabel_emotion/topk_metrics.py (ties to the lower label index, zero_division 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np

from .multilabel_emotion.topk_metrics import binarize_top_k, validate_references, validate_scores, validate_top_k

N_RESAMPLES = 1000
LEVEL = 0.95


def track_weights(groups: Sequence[Hashable], n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[n_resamples, rows] weights: how often each row's track was drawn in each resample."""
    index: dict[Hashable, int] = {}
    inverse = np.fromiter((index.setdefault(g, len(index)) for g in groups), dtype=np.int64, count=len(groups))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(index), size=(n_resamples, len(index)))
    counts = np.zeros((n_resamples, len(index)), dtype=np.float64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    return counts[:, inverse]


def macro_f1_samples(scores, references, top_k: int, weights: np.ndarray) -> np.ndarray:
    """Macro F1 at top-k [n_resamples] for row weights [n_resamples, rows]: F1 per label from weighted TP, FP
    and FN (0 where a label is neither true nor predicted), averaged over every label."""
    truth = validate_references(references).astype(np.float64)
    scores = validate_scores(scores)
    predicted = binarize_top_k(scores, validate_top_k(top_k, scores.shape[1])).astype(np.float64)
    tp = weights @ (predicted * truth)
    fp = weights @ (predicted * (1.0 - truth))
    fn = weights @ ((1.0 - predicted) * truth)
    denominator = 2.0 * tp + fp + fn
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)


def roc_auc_samples(scores, references, weights: np.ndarray) -> np.ndarray:
    """Macro ROC-AUC [n_resamples] over the labels with a positive and a negative row (the metric's rule), each
    the weighted probability that a positive row outscores a negative one (ties count half)."""
    truth = validate_references(references).astype(bool)
    scores = validate_scores(scores)
    valid = truth.any(axis=0) & (~truth).any(axis=0)  # a positive and a negative row
    aucs = []
    for label in np.flatnonzero(valid):
        order = np.argsort(scores[:, label], kind="stable")
        ranked_scores, positive = scores[order, label], truth[order, label]
        w = weights[:, order]
        negative_w = np.where(positive, 0.0, w)
        # rows of equal score form a block: a positive beats the negatives of lower blocks, and half of its own
        _, first, counts = np.unique(ranked_scores, return_index=True, return_counts=True)
        block = np.repeat(np.arange(len(first)), counts)
        below = (np.cumsum(negative_w, axis=1) - negative_w)[:, first][:, block]
        tied = np.add.reduceat(negative_w, first, axis=1)[:, block]
        wins = (w * positive * (below + 0.5 * tied)).sum(axis=1)
        pairs = (w * positive).sum(axis=1) * (w * ~positive).sum(axis=1)
        aucs.append(np.divide(wins, pairs, out=np.full_like(wins, np.nan), where=pairs > 0))
    if not aucs:
        return np.full(len(weights), np.nan)
    with warnings.catch_warnings():  # a resample may hold no positive row of any label: NaN, left out later
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(aucs), axis=0)


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval [low, high] of bootstrap samples (NaN samples, e.g. a resample without any
    positive row for a label, are left out)."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return [float("nan"), float("nan")]
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]
