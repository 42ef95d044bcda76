"""Mean Shift over label embeddings, with the degenerate cases detected, reported and (by default) fixed.

docs/alignment.md explains why the bandwidth needs care.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from scoring_meralign import validate_labels

Fallback = Literal["min_neighbors", "raise", "none"]
FALLBACKS: tuple[str, ...] = ("min_neighbors", "raise", "none")

# A bandwidth below this fraction of the mean nearest-neighbour distance is numerical noise.
_NEAR_ZERO = 1e-3
# A cluster of at least 3 labels whose members are, on average, this close to as far apart as any two
# labels is not a group of related words: the flat kernel drifted towards the labels' common mean
# and swept unrelated words together. Measured: real synonym clusters stay <= 0.81 of the overall
# mean distance (the paper's MTG + CAL500 included); swept clusters ("sad" with "happy", "party")
# are >= 0.89.
DEFAULT_MAX_CLUSTER_SPREAD = 0.85
_SPREAD_MIN_SIZE = 3
_SHRINK, _MAX_SHRINKS = 0.95, 20
_TOO_WIDE = "the bandwidth is too wide"


class DegenerateClusteringError(ValueError):
    """Raised by ``cluster_labels(..., fallback="raise")`` when the clustering is degenerate."""


@dataclass(frozen=True, eq=False)
class LabelClusters:
    """A Mean Shift clustering of labels. Rows follow the order the labels were given in.

    ``degenerate`` and ``reasons`` describe the *requested* setting; when a fallback replaced it,
    ``fallback_applied`` is True and ``final_degenerate`` says whether the returned clustering is
    still degenerate. ``assignments`` is the paper's label -> cluster map (the first row of a label
    that occurs in several vocabularies wins); use :meth:`cluster_of` for exact lookups.
    """

    labels: tuple[str, ...]
    datasets: tuple[str, ...] | None
    cluster_ids: np.ndarray
    assignments: dict[str, int]
    centers: np.ndarray
    bandwidth: float
    degenerate: bool
    n_clusters: int
    reasons: tuple[str, ...] = ()
    fallback_applied: bool = False
    final_degenerate: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def cluster_of(self, label: str, dataset: str | None = None) -> int:
        """Cluster id of ``label`` (of ``dataset`` when labels are keyed by dataset)."""
        for row, (name, ds) in enumerate(zip(self.labels, self.datasets or (None,) * len(self.labels))):
            if name == label and (dataset is None or ds == dataset):
                return int(self.cluster_ids[row])
        where = f" in dataset {dataset!r}" if dataset is not None else ""
        raise ValueError(f"label {label!r}{where} was not clustered")

    def by_dataset(self) -> dict[str, dict[str, int]]:
        """``{dataset: {label: cluster id}}`` (dataset ``""`` when none were given)."""
        out: dict[str, dict[str, int]] = {}
        for row, label in enumerate(self.labels):
            out.setdefault(self.dataset_of(row), {})[label] = int(self.cluster_ids[row])
        return out

    def members(self, cluster_id: int) -> list[tuple[str, str]]:
        """``[(dataset, label), ...]`` of one cluster, in row order."""
        return [
            (self.dataset_of(row), label)
            for row, label in enumerate(self.labels)
            if self.cluster_ids[row] == cluster_id
        ]

    def partition(self) -> list[frozenset[tuple[str, str]]]:
        """The grouping as sets of (dataset, label): comparable whatever the cluster ids are."""
        return [frozenset(self.members(c)) for c in range(self.n_clusters) if self.members(c)]

    def dataset_of(self, row: int) -> str:
        return self.datasets[row] if self.datasets is not None else ""


def check_embeddings(embeddings, n_labels: int) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [n_labels, dim], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"embeddings must be numeric, got dtype {x.dtype}")
    if x.shape[0] != n_labels:
        raise ValueError(f"embeddings has {x.shape[0]} rows but labels has {n_labels} entries: they must match")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contains NaN or infinite values")
    return x.astype(np.float32, copy=False)


def _check_rows(labels, datasets) -> tuple[list[str], list[str] | None]:
    """Labels must be unique per dataset (or overall when no datasets are given)."""
    if datasets is None:
        return validate_labels(labels, "labels"), None
    for name, value in (("labels", labels), ("datasets", datasets)):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a list of strings, one per embedding row, got {type(value).__name__}")
    labels, datasets = list(labels), [str(d) for d in datasets]
    if not labels:
        raise ValueError("labels is empty: give at least one label")
    if len(datasets) != len(labels):
        raise ValueError(f"datasets has {len(datasets)} entries but labels has {len(labels)}: they must match")
    for name in dict.fromkeys(datasets):
        validate_labels([lab for lab, d in zip(labels, datasets) if d == name], f"labels of dataset {name!r}")
    return labels, datasets


def _pairwise_distances(x: np.ndarray) -> np.ndarray:
    """Square matrix of Euclidean distances between labels (label sets are small)."""
    from scipy.spatial.distance import pdist, squareform

    return squareform(pdist(x.astype(np.float64)))


def _single_thread():
    """Label sets are tiny: Mean Shift makes one neighbour query per seed and step, and an OpenMP
    team per query costs far more than the query (40x slower on a busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def min_neighbors_quantile(n_samples: int, min_neighbors: int) -> float:
    """Smallest ``quantile`` for which ``estimate_bandwidth`` keeps ``min_neighbors`` real neighbours.

    ``estimate_bandwidth`` uses ``int(n_samples * quantile)`` neighbours, the point itself included,
    so ``min_neighbors`` others need ``min_neighbors + 1``.
    """
    if not isinstance(min_neighbors, int) or min_neighbors < 1:
        raise ValueError(f"min_neighbors must be a positive int, got {min_neighbors!r}")
    if min_neighbors + 1 > n_samples:
        raise ValueError(f"min_neighbors={min_neighbors} needs at least {min_neighbors + 1} labels, got {n_samples}")
    quantile = (min_neighbors + 1) / n_samples
    while int(n_samples * quantile) < min_neighbors + 1:  # guard against rounding just below
        quantile = float(np.nextafter(quantile, 1.0))
    return quantile


def _estimate(x: np.ndarray, quantile: float, n_samples: int | None, random_state) -> float:
    from sklearn.cluster import estimate_bandwidth

    with _single_thread():
        return float(estimate_bandwidth(x, quantile=quantile, n_samples=n_samples, random_state=random_state))


def _fit(x: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Mean Shift ids and centers; when no seed has a neighbour (bandwidth ~0) every row is its own cluster."""
    from sklearn.cluster import MeanShift

    if not (np.isfinite(bandwidth) and bandwidth > 0):  # MeanShift refuses it; the diagnosis reports it
        return np.arange(len(x)), x.copy(), None
    try:
        with _single_thread():
            model = MeanShift(bandwidth=bandwidth).fit(x)
    except ValueError as error:
        if "No point was within bandwidth" not in str(error):
            raise
        return np.arange(len(x)), x.copy(), "no label lies within the bandwidth of any Mean Shift seed"
    return model.labels_.astype(np.int64), np.asarray(model.cluster_centers_, dtype=np.float32), None


def _diagnose(
    bandwidth: float, ids: np.ndarray, distances: np.ndarray, scale: float, note: str | None, max_spread: float
) -> list[str]:
    """Why a clustering carries no alignment information (empty list: it does).

    ``distances`` is the square matrix of pairwise label distances, ``scale`` the mean distance to
    the nearest other label.
    """
    n, reasons = len(ids), []
    if note:
        reasons.append(note)
    if not np.isfinite(bandwidth) or bandwidth <= _NEAR_ZERO * scale:
        reasons.append(f"bandwidth {bandwidth:.3g} is near zero (mean nearest-label distance {scale:.3g})")
    counts = np.bincount(ids)
    if len(counts) == n:
        reasons.append(f"every label is its own cluster ({n} clusters for {n} labels)")
        return reasons
    overall = distances[np.triu_indices(n, 1)].mean()
    for cluster in np.flatnonzero(counts >= _SPREAD_MIN_SIZE):
        members = np.flatnonzero(ids == cluster)
        spread = distances[np.ix_(members, members)][np.triu_indices(len(members), 1)].mean() / overall
        if spread >= max_spread:
            reasons.append(
                f"cluster {cluster} holds {len(members)} of {n} labels that are nearly as far apart as "
                f"any two labels (mean distance {spread:.2f} of the overall mean): {_TOO_WIDE}"
            )
            break
    return reasons


def _overmerged(reasons: list[str]) -> bool:
    return any(reason.endswith(_TOO_WIDE) for reason in reasons)


def _fallback_fit(x, start: float, distances: np.ndarray, scale: float, max_spread: float):
    """Fit at the k-nearest-label bandwidth, narrowed step by step while one cluster is too big.

    Narrowing only answers over-merging; it stops at the first clustering that passes, or that
    fails for another reason (e.g. every label alone), which is then reported.
    """
    used, tried = start, [start]
    ids, centers, note = _fit(x, used)
    reasons = _diagnose(used, ids, distances, scale, note, max_spread)
    for _ in range(_MAX_SHRINKS):
        if not _overmerged(reasons):
            break
        used *= _SHRINK
        tried.append(used)
        ids, centers, note = _fit(x, used)
        reasons = _diagnose(used, ids, distances, scale, note, max_spread)
    return used, ids, centers, reasons, tried


def _check_settings(bandwidth, quantile, n_samples, fallback, min_neighbors, n: int) -> None:
    if bandwidth is not None and (isinstance(bandwidth, bool) or not np.isfinite(bandwidth) or bandwidth <= 0):
        raise ValueError(f"bandwidth must be a positive finite number or None, got {bandwidth!r}")
    if quantile is not None and (isinstance(quantile, bool) or not 0 < quantile <= 1):
        raise ValueError(f"quantile must be in (0, 1] or None, got {quantile!r}")
    if n_samples is not None and (not isinstance(n_samples, (int, np.integer)) or n_samples < 1):
        raise ValueError(f"n_samples must be a positive int or None, got {n_samples!r}")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if n < 2:
        raise ValueError(f"labels must hold at least 2 labels to cluster, got {n}")
    min_neighbors_quantile(min(n, n_samples or n), min_neighbors)  # validates min_neighbors


def cluster_labels(
    embeddings,
    labels: Sequence[str],
    *,
    bandwidth: float | None = None,
    quantile: float | None = None,
    n_samples: int | None = None,
    random_state: int | None = 0,
    fallback: Fallback = "min_neighbors",
    min_neighbors: int = 1,
    datasets: Sequence[str] | None = None,
    max_cluster_spread: float = DEFAULT_MAX_CLUSTER_SPREAD,
) -> LabelClusters:
    """Mean Shift over label embeddings, with the degenerate cases detected and reported.

    The bandwidth is ``bandwidth`` if given, else ``estimate_bandwidth(quantile, n_samples,
    random_state)``; ``quantile=None`` means the smallest quantile that keeps ``min_neighbors`` real
    neighbours (the mean distance to the k-th nearest other label). ``random_state`` only matters
    when ``n_samples`` subsamples the labels (sklearn's own default is 0, the paper's call).

    A clustering is degenerate when the bandwidth is near zero, every label is its own cluster, or
    a cluster of 3 or more labels is spread almost like the whole set (mean pairwise distance at
    least ``max_cluster_spread`` times the mean over all labels: unrelated words). Then, after
    a warning: ``"raise"`` raises :class:`DegenerateClusteringError`; ``"min_neighbors"`` redoes it
    with the ``min_neighbors`` bandwidth, narrowed in 5 % steps while a cluster stays too big;
    ``"none"`` returns it as it is.

    ``datasets`` (one name per row) keys rows by (dataset, label), so a word may occur in several
    vocabularies; without it labels must be unique.
    """
    labels, datasets = _check_rows(labels, datasets)
    x = check_embeddings(embeddings, len(labels))
    _check_settings(bandwidth, quantile, n_samples, fallback, min_neighbors, len(labels))
    if isinstance(max_cluster_spread, bool) or not 0 < max_cluster_spread <= 1:
        raise ValueError(f"max_cluster_spread must be in (0, 1], got {max_cluster_spread!r}")
    n_used = min(len(labels), n_samples or len(labels))
    distances = _pairwise_distances(x)
    if distances.max() == 0:
        raise ValueError("embeddings: every row is identical, there is nothing to cluster")
    scale = float(np.sort(distances, axis=1)[:, 1].mean())
    rule_quantile = min_neighbors_quantile(n_used, min_neighbors)
    used_quantile = None if bandwidth is not None else (quantile if quantile is not None else rule_quantile)
    requested = float(bandwidth) if bandwidth is not None else _estimate(x, used_quantile, n_samples, random_state)
    ids, centers, note = _fit(x, requested)
    reasons = _diagnose(requested, ids, distances, scale, note, max_cluster_spread)
    used, final_reasons, tried = requested, reasons, [requested]
    if reasons:
        message = f"degenerate label clustering at bandwidth {requested:.3g}: {'; '.join(reasons)}"
        if fallback == "raise":
            raise DegenerateClusteringError(message)
        warnings.warn(message, stacklevel=2)
        if fallback == "min_neighbors":
            start = (
                requested if used_quantile == rule_quantile else _estimate(x, rule_quantile, n_samples, random_state)
            )
            used, ids, centers, final_reasons, more = _fallback_fit(x, start, distances, scale, max_cluster_spread)
            tried += more[1:] if start == requested else more
            if final_reasons:
                warnings.warn(
                    f"still degenerate after the {min_neighbors}-nearest-label fallback (bandwidth "
                    f"{used:.3g}): {'; '.join(final_reasons)}",
                    stacklevel=2,
                )
    settings = {
        "bandwidth": _plain(bandwidth, float),
        "quantile": _plain(quantile, float),
        "n_samples": _plain(n_samples, int),
        "random_state": _plain(random_state, int),
        "fallback": fallback,
        "min_neighbors": min_neighbors,
        "max_cluster_spread": max_cluster_spread,
        "requested_bandwidth": requested,
        "requested_quantile": used_quantile,
        "min_neighbors_quantile": rule_quantile,
        "mean_nearest_label_distance": scale,
        "bandwidths_tried": tried,
        "final_reasons": list(final_reasons),
    }
    return LabelClusters(
        labels=tuple(labels),
        datasets=tuple(datasets) if datasets is not None else None,
        cluster_ids=ids,
        assignments=_flat_assignments(labels, ids),
        centers=centers,
        bandwidth=used,
        degenerate=bool(reasons),
        n_clusters=int(len(centers)),
        reasons=tuple(reasons),
        fallback_applied=len(tried) > 1,
        final_degenerate=bool(final_reasons),
        settings=settings,
    )


def _plain(value, kind):
    """A JSON-ready setting: None, a plain int/float, or (e.g. a RandomState) its repr."""
    if value is None:
        return None
    return kind(value) if isinstance(value, (int, float, np.integer, np.floating)) else repr(value)


def _flat_assignments(labels: list[str], ids: np.ndarray) -> dict[str, int]:
    """label -> cluster id; a label seen in several vocabularies keeps its first row's cluster."""
    out: dict[str, int] = {}
    split = set()
    for label, cluster in zip(labels, ids):
        if label in out and out[label] != int(cluster):
            split.add(label)
        out.setdefault(label, int(cluster))
    if split:
        warnings.warn(
            f"labels {sorted(split)} occur in several vocabularies and fell in different clusters; "
            "assignments keeps the first; use cluster_of(label, dataset)",
            stacklevel=3,
        )
    return out
