"""Evaluation metrics: the ``multilabel_emotion`` evaluate module, song aggregation, chance baselines.

``load_metric()`` loads the metric by local path, so it needs no network (``evaluate.load("f1")``
would fetch from the Hub). The plain functions work without ``evaluate`` installed.
"""

from __future__ import annotations

from pathlib import Path

from .aggregation import aggregate_songs, chance_baselines
from .multilabel_emotion.topk_metrics import binarize_top_k, multilabel_topk_metrics, top_k_indices

METRIC_PATH = Path(__file__).resolve().parent / "multilabel_emotion"

__all__ = [
    "METRIC_PATH",
    "aggregate_songs",
    "binarize_top_k",
    "chance_baselines",
    "load_metric",
    "multilabel_topk_metrics",
    "top_k_indices",
]


def load_metric(**kwargs):
    """``evaluate.load`` of the local ``multilabel_emotion`` module; kwargs go to ``evaluate.load``."""
    import evaluate  # training-side dependency, imported only when the evaluate wrapper is wanted

    return evaluate.load(str(METRIC_PATH), **kwargs)
