"""Song-level aggregation of segment scores and chance baselines for top-k emotion tagging.

Every score the project reports is printed beside its chance level: two of the three zero-shot
results of the method's paper are at or below chance, so a score without its baseline says little.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Optional

import numpy as np
from scipy.stats import binom

from scoring_meralign import AGGREGATIONS, aggregate_segments

from .multilabel_emotion.topk_metrics import (
    auc_label_mask,
    binarize_top_k,
    set_metrics,
    validate_references,
    validate_scores,
    validate_top_k,
)


def aggregate_songs(
    segment_scores: Any, song_ids: Sequence[Hashable], method: str = "mean", top_k: Optional[int] = None
) -> tuple[list[Hashable], np.ndarray]:
    """Combine segment score rows [S, L] into one row per song [N, L], by the pipeline's own rule.

    Args:
        segment_scores: scores [S, L], higher = more likely.
        song_ids: S hashable ids; segments of a song need not be contiguous.
        method: ``"mean"`` averages the segments' scores; ``"vote"`` is the majority vote of
            ``scoring_meralign.aggregate_segments``: each segment votes for its ``top_k`` labels, and a
            song's score for a label is the fraction of its segments that voted for it plus a tie-break
            offset below half a vote (by mean segment score, then lower label index). Hence the top-k of
            the vote scores IS the majority-vote prediction the pipeline returns, and
            ``np.round(score * n_segments) / n_segments`` recovers the plain vote fraction.
        top_k: labels each segment votes for; required for ``"vote"``, unused by ``"mean"``.

    Returns:
        (unique song ids in order of first appearance, song scores [N, L] float64).
    """
    scores = validate_scores(segment_scores, argument="segment_scores")
    if method not in AGGREGATIONS:
        raise ValueError(f"method must be one of {AGGREGATIONS}, got {method!r}")
    unique_ids, inverse = _factorize(song_ids, scores.shape[0])
    if method == "mean":
        if top_k is not None:
            validate_top_k(top_k, scores.shape[1])
        return unique_ids, aggregate_segments(scores, "mean", groups=inverse)[0]
    if top_k is None:
        raise ValueError('top_k is required for method="vote": the number of labels each segment votes for')
    top_k = validate_top_k(top_k, scores.shape[1])
    return unique_ids, aggregate_segments(scores, "vote", vote_k=top_k, groups=inverse)[1]


def chance_baselines(
    references: Any, top_k: int, prior: Any = None, n_trials: int = 200, seed: int = 0, method: str = "exact"
) -> dict[str, Any]:
    """Scores a model must beat on ``references`` [N, L] at ``top_k``.

    - ``random_topk``: expected macro precision/recall/F1 and micro F1 when each row's top-k is
      drawn uniformly at random (the paper's "chance, random top-k per song"). ``method="exact"``
      computes the expectation in closed form (see :func:`_random_topk_exact`);
      ``method="simulate"`` averages ``n_trials`` random draws from ``seed``.
    - ``frequency_prior``: the metrics of predicting the same ``top_k`` labels for every row, the
      most frequent ones under ``prior`` [L] (ties to the lower label index). Pass the TRAINING
      label frequencies as ``prior`` when there are any; the default, the frequencies of
      ``references`` themselves, peeks at the test labels and is an optimistic baseline.
    - ``random_scores``: chance ROC-AUC (0.5) and chance PR-AUC (the macro mean of label
      prevalence, the precision of a random ranking; the expected average precision of a random
      ranking is slightly higher on few rows), over the same labels as the metric's AUCs.
    """
    truth = validate_references(references)
    n_rows, n_labels = truth.shape
    top_k = validate_top_k(top_k, n_labels)
    if method == "exact":
        random_topk = _random_topk_exact(truth, top_k)
    elif method == "simulate":
        random_topk = _random_topk_simulated(truth, top_k, n_trials, seed)
    else:
        raise ValueError(f'method must be "exact" or "simulate", got {method!r}')
    prior_vector = truth.mean(axis=0) if prior is None else _validate_prior(prior, n_labels)
    chosen = np.argsort(-prior_vector, kind="stable")[:top_k]
    predicted = np.zeros_like(truth)
    predicted[:, chosen] = 1
    valid = auc_label_mask(truth)
    prevalence = truth.mean(axis=0)[valid]
    return {
        "random_topk": random_topk,
        "frequency_prior": {
            **set_metrics(truth, predicted),
            "predicted_labels": [int(i) for i in chosen],
            "prior": "given" if prior is not None else "references",
        },
        "random_scores": {
            "roc_auc_macro": 0.5 if valid.any() else float("nan"),
            "pr_auc_macro": float(prevalence.mean()) if valid.any() else float("nan"),
        },
        "top_k": top_k,
        "n_rows": int(n_rows),
    }


def _random_topk_exact(truth: np.ndarray, top_k: int) -> dict[str, float]:
    """Closed-form expectation of the set metrics under uniformly random top-k rows.

    Each row includes label l with probability q = k/L, independently across rows, so the number
    T of rows predicting l is Binomial(N, q); given T = t, the t rows are a uniform subset, so the
    expected true positives are t * P/N (P = rows having l). With zero_division=0:
    E[precision] = P/N * (1 - (1-q)^N), E[recall] = q (0 when P = 0),
    E[F1] = E[2 TP / (P + T)] = sum_t Binom(t; N, q) * 2 t P / (N (P + t)), and, as N*k
    predictions are made in all, E[micro F1] = 2 q P_total / (P_total + N k) exactly.
    """
    n_rows, n_labels = truth.shape
    q = top_k / n_labels
    positives = truth.sum(axis=0).astype(np.float64)
    t = np.arange(1, n_rows + 1, dtype=np.float64)
    weights = binom.pmf(t, n_rows, q)
    f1 = (weights[None, :] * 2 * t[None, :] * positives[:, None] / (n_rows * (positives[:, None] + t[None, :]))).sum(
        axis=1
    )
    precision = positives / n_rows * (1.0 - (1.0 - q) ** n_rows)
    recall = np.where(positives > 0, q, 0.0)
    total = positives.sum()
    return {
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "micro_f1": float(2 * q * total / (total + n_rows * top_k)),
    }


def _random_topk_simulated(truth: np.ndarray, top_k: int, n_trials: int, seed: int) -> dict[str, float]:
    """Monte Carlo estimate of :func:`_random_topk_exact`, to cross-check it."""
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive int, got {n_trials!r}")
    rng = np.random.default_rng(seed)
    trials = [set_metrics(truth, binarize_top_k(rng.random(truth.shape), top_k)) for _ in range(n_trials)]
    return {key: float(np.mean([trial[key] for trial in trials])) for key in trials[0]}


def _validate_prior(prior: Any, n_labels: int) -> np.ndarray:
    try:
        vector = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"prior must be a numeric vector of {n_labels} label frequencies") from None
    if vector.shape != (n_labels,):
        raise ValueError(f"prior must have shape ({n_labels},) (one frequency per label), got {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError("prior contains NaN or infinite values")
    return vector


def _factorize(song_ids: Sequence[Hashable], n_segments: int) -> tuple[list[Hashable], np.ndarray]:
    """Map ids to 0..N-1 in order of first appearance (np.unique would sort them)."""
    if isinstance(song_ids, (str, bytes)) or not hasattr(song_ids, "__len__"):
        raise TypeError(f"song_ids must be a sequence of {n_segments} ids, got {type(song_ids).__name__}")
    ids = song_ids.tolist() if hasattr(song_ids, "tolist") else list(song_ids)
    if len(ids) != n_segments:
        raise ValueError(f"song_ids has {len(ids)} entries but segment_scores has {n_segments} rows")
    index: dict[Hashable, int] = {}
    try:
        inverse = np.fromiter((index.setdefault(song, len(index)) for song in ids), dtype=np.int64, count=len(ids))
    except TypeError:
        raise TypeError("song_ids must contain hashable ids (str or int)") from None
    return list(index), inverse
