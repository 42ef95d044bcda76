"""Multi-label emotion metrics at top-k, computed with scikit-learn.

This file is imported by the ``evaluate`` metric script next to it (``evaluate`` copies it into its
module cache), so it depends only on numpy, scikit-learn and the installed scoring rules (``scoring_meralign``),
never on the ``meralign`` package.

Conventions, stated once so that every number of the project means the same thing:

- A prediction is the ``top_k`` highest-scoring labels of a row. Equal scores are broken by the
  lower label index (a stable sort), so the binarisation is deterministic.
- Macro precision / recall / F1 average over ALL ``L`` labels, as scikit-learn's
  ``average="macro"`` with ``zero_division=0``: a label nobody has and nobody predicted counts 0.
  (Macro F1 is the mean of per-label F1, not the F1 of macro precision and recall.)
- ROC-AUC and PR-AUC (average precision) are macro averages over the labels that have at least one
  positive AND one negative row; the others are undefined and are counted in
  ``n_auc_labels_skipped``. With no such label both are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from scoring_meralign import top_k_indices  # the project's one top-k rule: ties go to the lower label index


def validate_scores(scores: Any, argument: str = "predictions") -> np.ndarray:
    """Return ``scores`` as a finite float64 matrix [N, L] or raise naming ``argument``."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be a numeric matrix [N, L] with rows of equal length: {error}") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{argument} must be a non-empty 2-D matrix [N, L], got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{argument} contains NaN or infinite scores (first at row {bad[0]}, label {bad[1]})")
    return array


def validate_references(
    references: Any, shape: Optional[tuple[int, int]] = None, argument: str = "references"
) -> np.ndarray:
    """Return ``references`` as a 0/1 int matrix [N, L] or raise naming ``argument``.

    ``shape``, when given, is the shape of the matching score matrix.
    """
    try:
        array = np.asarray(references)
        numeric = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{argument} must be a multi-hot matrix [N, L] of 0/1 with rows of equal length: {error}"
        ) from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{argument} must be a non-empty 2-D multi-hot matrix [N, L], got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(
            f"{argument} has shape {array.shape} but predictions have shape {tuple(shape)}: they must match"
        )
    if not np.isin(numeric, (0.0, 1.0)).all():
        bad = numeric[~np.isin(numeric, (0.0, 1.0))][0]
        raise ValueError(f"{argument} must be binary (0/1 multi-hot), found the value {float(bad)!r}")
    return numeric.astype(np.int64)


def validate_top_k(top_k: Any, n_labels: int) -> int:
    """``top_k`` must be an int in [1, n_labels]; why: top-0 is empty and top-(L+1) does not exist."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if not 1 <= int(top_k) <= n_labels:
        raise ValueError(f"top_k must be in [1, {n_labels}] (the number of labels), got {top_k}")
    return int(top_k)


def binarize_top_k(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Multi-hot int matrix [N, L] of each row's top-k labels (see :func:`top_k_indices`)."""
    predicted = np.zeros(scores.shape, dtype=np.int64)
    np.put_along_axis(predicted, top_k_indices(scores, top_k), 1, axis=1)
    return predicted


def auc_label_mask(references: np.ndarray) -> np.ndarray:
    """Labels (columns) with at least one positive and one negative row: where AUCs are defined."""
    positives = references.sum(axis=0)
    return (positives > 0) & (positives < references.shape[0])


def set_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Macro precision/recall/F1 over all labels and micro F1 of two multi-hot matrices."""
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average="macro", zero_division=0)
    _, _, micro_f1, _ = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    return {
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "micro_f1": float(micro_f1),
    }


def multilabel_topk_metrics(
    predictions: Any, references: Any, top_k: int, labels: Optional[Sequence[str]] = None
) -> dict[str, Any]:
    """Top-k set metrics and ranking metrics of a score matrix against multi-hot references.

    Args:
        predictions: scores [N, L], higher = more likely (one row per segment or per song).
        references: multi-hot [N, L] of 0/1.
        top_k: how many labels each row predicts.
        labels: optional names of the L labels; ``per_label_f1`` is then a dict name -> F1.

    Returns a dict: ``macro_precision``, ``macro_recall``, ``macro_f1``, ``micro_f1``,
    ``per_label_f1``, ``roc_auc_macro``, ``pr_auc_macro``, ``n_auc_labels``,
    ``n_auc_labels_skipped``, ``top_k``, ``n_rows``, ``n_labels``.
    """
    scores = validate_scores(predictions)
    truth = validate_references(references, shape=scores.shape)
    top_k = validate_top_k(top_k, scores.shape[1])
    names = _validate_label_names(labels, scores.shape[1])

    predicted = binarize_top_k(scores, top_k)
    result = set_metrics(truth, predicted)
    _, _, per_label, _ = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    per_label = [float(value) for value in per_label]

    valid = auc_label_mask(truth)
    if valid.any():
        roc_auc = float(roc_auc_score(truth[:, valid], scores[:, valid], average="macro"))
        pr_auc = float(average_precision_score(truth[:, valid], scores[:, valid], average="macro"))
    else:
        roc_auc = pr_auc = float("nan")
    return {
        **result,
        "per_label_f1": dict(zip(names, per_label)) if names is not None else per_label,
        "roc_auc_macro": roc_auc,
        "pr_auc_macro": pr_auc,
        "n_auc_labels": int(valid.sum()),
        "n_auc_labels_skipped": int((~valid).sum()),
        "top_k": top_k,
        "n_rows": int(scores.shape[0]),
        "n_labels": int(scores.shape[1]),
    }


def _validate_label_names(labels: Optional[Sequence[str]], n_labels: int) -> Optional[list[str]]:
    """Names must be L distinct strings, or None; a wrong count would silently mislabel the output."""
    if labels is None:
        return None
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(f"labels must be a list of {n_labels} strings, got {type(labels).__name__}")
    names = list(labels)
    if len(names) != n_labels:
        raise ValueError(f"labels has {len(names)} names but predictions have {n_labels} label columns")
    if not all(isinstance(name, str) for name in names):
        raise TypeError("labels must contain only strings")
    if len(set(names)) != len(names):
        raise ValueError("labels contains duplicate names")
    return names
