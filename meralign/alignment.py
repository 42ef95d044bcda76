"""Label alignment across vocabularies: embed emotion words, cluster them with Mean Shift, report.

The method's premise is that words from different datasets ("sad", "sadness", "melancholic") land
near each other in a sentence-embedding space, so vocabularies that share no string can still be
trained together. This module embeds labels with a sentence-transformer, groups them with
scikit-learn's ``MeanShift`` and writes what it found (JSON, centers, a Markdown report, a PCA
picture).

Why the bandwidth needs care. ``estimate_bandwidth(X, quantile=q)`` averages, over all points, the
distance to the ``int(n * q)``-th nearest point *counting the point itself*. When ``int(n * q)`` is 1
the "neighbour" is the point itself and the bandwidth collapses to floating-point noise (~1e-8):
that is what happens to two of the paper's three training pairs, whose "clusters" are singletons
plus rounding accidents. At the other end, bare all-MiniLM-L6-v2 label embeddings share a common
direction (mean cosine ~0.28), so every label lies ~0.84 from the labels' mean; a flat kernel much
wider than that drifts there and sweeps unrelated words into one cluster (sklearn's default
quantile 0.3 puts all 83 built-in labels in one). The default here is therefore the smallest
quantile that keeps ``min_neighbors`` real neighbours (``quantile=None``): with 1 neighbour it is
the mean nearest-label distance, which is also what the paper's one working setting, (0.03, 73) on
MTG + CAL500, amounts to (``int(73 * 0.03) = 2``). Every result is checked; a degenerate one is
flagged, warned about and, by default, redone with that rule (narrowed while it still sweeps).

Labels are rows keyed by (dataset, label). The paper does the same: its MTG + CAL500 clustering
runs over 73 rows, "happy" and "sad" twice (their expanded embeddings differ per dataset), and its
label map is a plain dict in which the later dataset's row wins. Keeping both rows is what
reproduces the paper; identical strings embedded the same way always share a cluster. Exact
lookups use :meth:`LabelClusters.cluster_of` or :meth:`LabelClusters.by_dataset`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from meralign.utils import DEFAULT_TEXT_MODEL_ID, atomic_write_bytes, default_text_model_path, parse_args
from meralign.vocabularies import BUILTIN, Vocabulary, load_vocabulary, resolve_vocabulary, validate_labels

Fallback = Literal["min_neighbors", "raise", "none"]
FALLBACKS: tuple[str, ...] = ("min_neighbors", "raise", "none")

# Other spellings users type for the built-in vocabularies (matched case-insensitively, "_" = "-").
_VOCABULARY_ALIASES = {
    "mtg": "mtg-jamendo", "jamendo": "mtg-jamendo", "mtg-jamendo-moodtheme": "mtg-jamendo",
    "cal500-emotion": "cal500", "emotify-gems9": "emotify", "gems9": "emotify", "gems-9": "emotify",
}
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


# --------------------------------------------------------------------------------------------
# Text model and label embeddings
# --------------------------------------------------------------------------------------------

def load_text_model(name_or_path: str | Path | None = None, device: str | None = None):
    """The SentenceTransformer for ``name_or_path`` (default: the packaged one), loaded once per process."""
    return _cached_text_model(str(name_or_path) if name_or_path is not None else default_text_model_path(), device)


@functools.lru_cache(maxsize=4)
def _cached_text_model(name_or_path: str, device: str | None):
    # Keyed on the resolved name, so load_text_model(), (None) and (default path) share one model.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device=device)


def _resolve_model(model):
    if model is None or isinstance(model, (str, Path)):
        return load_text_model(model)
    if not hasattr(model, "encode"):
        raise TypeError(f"model must be None, a model name/path or a SentenceTransformer, got {type(model).__name__}")
    return model


def _apply_template(template: str | None, label: str) -> str:
    if template is None:
        return label
    try:
        return template.format(label, label=label)
    except (KeyError, IndexError) as error:
        raise ValueError(f"template must contain '{{}}' or '{{label}}' and no other fields, got {template!r}") from error


def _label_texts(labels: list[str], template: str | None,
                 descriptions: Mapping[str, str | Sequence[str]] | None) -> list[list[str]]:
    """Texts embedded for each label: the (templated) label, then its descriptions, if any."""
    if template is not None:
        if not isinstance(template, str):
            raise TypeError(f"template must be a string such as 'music that sounds {{}}', got {type(template).__name__}")
        if "{}" not in template and "{label}" not in template:
            raise ValueError(f"template must contain '{{}}' or '{{label}}' where the label goes, got {template!r}")
    descriptions = dict(descriptions or {})
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ValueError(f"descriptions has entries for labels that are not in labels: {unknown}")
    texts = []
    for label in labels:
        extra = descriptions.get(label, ())
        extra = [extra] if isinstance(extra, str) else list(extra)
        if not all(isinstance(text, str) and text.strip() for text in extra):
            raise ValueError(f"descriptions[{label!r}] must be a non-empty string or a list of them, got {extra!r}")
        texts.append([_apply_template(template, label), *extra])
    return texts


def embed_labels(labels: Sequence[str], model=None, template: str | None = None,
                 descriptions: Mapping[str, str | Sequence[str]] | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings of ``labels``: float32 ``[n, d]`` (d = 384 for all-MiniLM-L6-v2),
    one row per entry (a label repeated across vocabularies gets the same row twice).

    ``template`` (e.g. ``"music that sounds {}"``) wraps each label. ``descriptions`` maps a label to
    extra texts ("label augmentation"); a label's embedding is then the mean of its texts' unit
    embeddings, re-normalised, so a label with descriptions stays a point on the same sphere.
    """
    labels = _label_strings(labels)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    texts = _label_texts(labels, template, descriptions)
    distinct = list(dict.fromkeys(text for group in texts for text in group))  # each text encoded once
    vectors = _resolve_model(model).encode(distinct, batch_size=batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    row_of = {text: i for i, text in enumerate(distinct)}
    out = np.stack([vectors[[row_of[text] for text in group]].mean(axis=0) for group in texts])
    return _normalise_rows(out, "label embeddings")


def _label_strings(labels) -> list[str]:
    """Non-empty strings. Repeats are allowed here: a word may belong to several vocabularies."""
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(f"labels must be a list of strings, got {type(labels).__name__}")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: give at least one label")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels must hold non-empty strings, got {label!r}")
    return labels


def _normalise_rows(x: np.ndarray, argument: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{argument} contains a zero vector, which has no direction")
    return (x / norms).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------

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
            out.setdefault(self._dataset(row), {})[label] = int(self.cluster_ids[row])
        return out

    def members(self, cluster_id: int) -> list[tuple[str, str]]:
        """``[(dataset, label), ...]`` of one cluster, in row order."""
        return [(self._dataset(row), label) for row, label in enumerate(self.labels)
                if self.cluster_ids[row] == cluster_id]

    def partition(self) -> list[frozenset[tuple[str, str]]]:
        """The grouping as sets of (dataset, label): comparable whatever the cluster ids are."""
        return [frozenset(self.members(c)) for c in range(self.n_clusters) if self.members(c)]

    def _dataset(self, row: int) -> str:
        return self.datasets[row] if self.datasets is not None else ""


def _check_embeddings(embeddings, n_labels: int) -> np.ndarray:
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
        validate_labels([l for l, d in zip(labels, datasets) if d == name], f"labels of dataset {name!r}")
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


def _diagnose(bandwidth: float, ids: np.ndarray, distances: np.ndarray, scale: float, note: str | None,
              max_spread: float) -> list[str]:
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
            reasons.append(f"cluster {cluster} holds {len(members)} of {n} labels that are nearly as far apart as "
                           f"any two labels (mean distance {spread:.2f} of the overall mean): {_TOO_WIDE}")
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


def cluster_labels(embeddings, labels: Sequence[str], *, bandwidth: float | None = None,
                   quantile: float | None = None, n_samples: int | None = None,
                   random_state: int | None = 0, fallback: Fallback = "min_neighbors",
                   min_neighbors: int = 1, datasets: Sequence[str] | None = None,
                   max_cluster_spread: float = DEFAULT_MAX_CLUSTER_SPREAD) -> LabelClusters:
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
    x = _check_embeddings(embeddings, len(labels))
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
            start = requested if used_quantile == rule_quantile else _estimate(x, rule_quantile, n_samples, random_state)
            used, ids, centers, final_reasons, more = _fallback_fit(x, start, distances, scale, max_cluster_spread)
            tried += more[1:] if start == requested else more
            if final_reasons:
                warnings.warn(f"still degenerate after the {min_neighbors}-nearest-label fallback (bandwidth "
                              f"{used:.3g}): {'; '.join(final_reasons)}", stacklevel=2)
    settings = {
        "bandwidth": _plain(bandwidth, float), "quantile": _plain(quantile, float),
        "n_samples": _plain(n_samples, int), "random_state": _plain(random_state, int),
        "fallback": fallback, "min_neighbors": min_neighbors, "max_cluster_spread": max_cluster_spread,
        "requested_bandwidth": requested, "requested_quantile": used_quantile,
        "min_neighbors_quantile": rule_quantile, "mean_nearest_label_distance": scale,
        "bandwidths_tried": tried, "final_reasons": list(final_reasons),
    }
    return LabelClusters(
        labels=tuple(labels), datasets=tuple(datasets) if datasets is not None else None,
        cluster_ids=ids, assignments=_flat_assignments(labels, ids), centers=centers, bandwidth=used,
        degenerate=bool(reasons), n_clusters=int(len(centers)), reasons=tuple(reasons),
        fallback_applied=len(tried) > 1, final_degenerate=bool(final_reasons), settings=settings,
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
        warnings.warn(f"labels {sorted(split)} occur in several vocabularies and fell in different clusters; "
                      "assignments keeps the first; use cluster_of(label, dataset)", stacklevel=3)
    return out


# --------------------------------------------------------------------------------------------
# Cross-vocabulary nearest labels
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NearestLabels:
    """For each label of ``source``, its ``k`` nearest labels of ``target`` with their cosine."""

    source: str
    target: str
    rows: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]

    def to_markdown(self) -> str:
        header = f"| {_md(self.source)} label | nearest {_md(self.target)} labels (cosine) |\n|---|---|\n"
        lines = [f"| {_md(label)} | " + ", ".join(f"{_md(other)} ({cos:.2f})" for other, cos in near) + " |"
                 for label, near in self.rows]
        return header + "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target,
                "rows": [{"label": label, "nearest": [{"label": o, "cosine": c} for o, c in near]}
                         for label, near in self.rows]}


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def nearest_labels(embeddings_a, labels_a: Sequence[str], embeddings_b, labels_b: Sequence[str], *,
                   k: int = 3, source: str = "A", target: str = "B") -> NearestLabels:
    """Cosine nearest neighbours of every label of A among the labels of B, best first."""
    labels_a, labels_b = validate_labels(labels_a, "labels_a"), validate_labels(labels_b, "labels_b")
    a = _normalise_rows(_check_embeddings(embeddings_a, len(labels_a)), "embeddings_a")
    b = _normalise_rows(_check_embeddings(embeddings_b, len(labels_b)), "embeddings_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings_a has dimension {a.shape[1]} but embeddings_b has {b.shape[1]}: they must match")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    cosine = a @ b.T
    order = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
    rows = tuple((label, tuple((labels_b[j], float(cosine[i, j])) for j in order[i]))
                 for i, label in enumerate(labels_a))
    return NearestLabels(source, target, rows)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

def _vocabulary(source) -> Vocabulary:
    """A built-in (also as "mtg", "CAL500", "gems9"), synthetic or file vocabulary, or a list of labels."""
    if isinstance(source, Path):
        source = str(source)
    if isinstance(source, str):
        if not Path(source).is_file():
            key = source.strip().lower().replace("_", "-")
            source = _VOCABULARY_ALIASES.get(key, key if key in BUILTIN else source)
        return resolve_vocabulary(source)
    return load_vocabulary(source)


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """What :func:`write_alignment` computed and where it wrote it."""

    clusters: LabelClusters
    vocabularies: tuple[Vocabulary, ...]
    embeddings: np.ndarray
    nearest: tuple[NearestLabels, ...]
    paths: dict[str, Path]


def _load_vocabularies(vocabularies) -> tuple[Vocabulary, ...]:
    if isinstance(vocabularies, (str, Path, Vocabulary)):
        vocabularies = [vocabularies]
    vocabularies = tuple(_vocabulary(v) for v in vocabularies)
    if not vocabularies:
        raise ValueError("vocabularies is empty: give at least one vocabulary (a built-in name, a file or a list)")
    names = [v.name for v in vocabularies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"vocabularies must have distinct names, got {repeated} more than once")
    return vocabularies


def _embed_vocabularies(vocabularies: tuple[Vocabulary, ...], embeddings, model, template, descriptions,
                        batch_size: int) -> np.ndarray:
    """One row per (vocabulary, label). Each distinct string is embedded once."""
    if embeddings is not None:
        missing = [v.name for v in vocabularies if v.name not in embeddings]
        if missing:
            raise ValueError(f"embeddings has no entry for vocabularies {missing}")
        return np.concatenate([_check_embeddings(embeddings[v.name], len(v)) for v in vocabularies])
    distinct = list(dict.fromkeys(label for v in vocabularies for label in v.labels))
    if descriptions:
        used = {label: texts for label, texts in descriptions.items() if label in set(distinct)}
        if not used:
            raise ValueError("descriptions matches none of the labels of the chosen vocabularies")
        descriptions = used
    vectors = embed_labels(distinct, model=model, template=template, descriptions=descriptions, batch_size=batch_size)
    index = {label: i for i, label in enumerate(distinct)}
    return vectors[[index[label] for v in vocabularies for label in v.labels]]


def write_alignment(output_dir: str | Path, vocabularies, *, model=None, template: str | None = None,
                    descriptions: Mapping[str, str | Sequence[str]] | None = None,
                    embeddings: Mapping[str, np.ndarray] | None = None, bandwidth: float | None = None,
                    quantile: float | None = None, n_samples: int | None = None, random_state: int | None = 0,
                    fallback: Fallback = "min_neighbors", min_neighbors: int = 1,
                    max_cluster_spread: float = DEFAULT_MAX_CLUSTER_SPREAD, nearest_k: int = 3,
                    batch_size: int = 64) -> AlignmentResult:
    """Embed and cluster the labels of ``vocabularies`` and write the four outputs into ``output_dir``.

    Writes ``label_clusters.json``, ``label_centers.npz``, ``label_clusters.md`` and
    ``label_clusters.png``. ``embeddings`` (vocabulary name -> ``[n_labels, d]``) replaces the text
    model, e.g. to show the paper's published label embeddings.
    """
    vocabularies = _load_vocabularies(vocabularies)
    x = _embed_vocabularies(vocabularies, embeddings, model, template, descriptions, batch_size)
    labels = [label for v in vocabularies for label in v.labels]
    datasets = [v.name for v in vocabularies for _ in v.labels]
    clusters = cluster_labels(x, labels, datasets=datasets, bandwidth=bandwidth, quantile=quantile,
                              n_samples=n_samples, random_state=random_state, fallback=fallback,
                              min_neighbors=min_neighbors, max_cluster_spread=max_cluster_spread)
    nearest = _nearest_tables(vocabularies, x, nearest_k)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": _model_name(model, embeddings), "template": template,
            "descriptions": {label: [texts] if isinstance(texts, str) else list(texts)
                             for label, texts in descriptions.items() if label in set(labels)} if descriptions else None}
    paths = {
        "json": out / "label_clusters.json", "centers": out / "label_centers.npz",
        "report": out / "label_clusters.md", "figure": out / "label_clusters.png",
    }
    atomic_write_bytes(paths["json"], _json_bytes(clusters, vocabularies, nearest, meta, paths["centers"].name))
    atomic_write_bytes(paths["centers"], _npz_bytes(clusters, x))
    atomic_write_bytes(paths["report"], _markdown(clusters, vocabularies, nearest, meta).encode("utf-8"))
    atomic_write_bytes(paths["figure"], _figure_png(clusters, x))
    return AlignmentResult(clusters, vocabularies, x, nearest, paths)


def _model_name(model, embeddings) -> str:
    """A short, path-free name of the text model for the outputs."""
    if embeddings is not None:
        return "precomputed embeddings"
    if model is not None and not isinstance(model, (str, Path)):
        try:  # a SentenceTransformer: its first module's transformer knows where it came from
            model = model[0].auto_model.config.name_or_path
        except (AttributeError, IndexError, KeyError, TypeError):
            return type(model).__name__
    try:
        default = default_text_model_path()
    except ImportError:
        default = None
    if model is None or (default is not None and os.path.realpath(str(model)) == os.path.realpath(default)):
        return DEFAULT_TEXT_MODEL_ID
    return Path(model).name if Path(model).exists() else str(model)


def _nearest_tables(vocabularies: tuple[Vocabulary, ...], x: np.ndarray, k: int) -> tuple[NearestLabels, ...]:
    """Every ordered pair of distinct vocabularies: A's labels against B's."""
    starts = np.cumsum([0, *map(len, vocabularies)])
    block = {v.name: x[starts[i]:starts[i + 1]] for i, v in enumerate(vocabularies)}
    return tuple(nearest_labels(block[a.name], a.labels, block[b.name], b.labels, k=min(k, len(b)),
                                source=a.name, target=b.name)
                 for a in vocabularies for b in vocabularies if a.name != b.name)


def _json_bytes(clusters: LabelClusters, vocabularies, nearest, meta: dict, centers_file: str) -> bytes:
    payload = {
        "format": "meralign.label_clusters/1",
        **meta,
        "bandwidth": clusters.bandwidth,
        "n_clusters": clusters.n_clusters,
        "degenerate": clusters.degenerate,
        "reasons": list(clusters.reasons),
        "fallback_applied": clusters.fallback_applied,
        "final_degenerate": clusters.final_degenerate,
        "settings": clusters.settings,
        "vocabularies": [{"name": v.name, "labels": list(v.labels), "top_k": v.top_k} for v in vocabularies],
        "labels": [{"label": label, "dataset": clusters._dataset(row), "cluster": int(clusters.cluster_ids[row])}
                   for row, label in enumerate(clusters.labels)],
        "assignments": clusters.by_dataset(),
        "clusters": [{"id": c, "members": [{"dataset": d, "label": l} for d, l in clusters.members(c)]}
                     for c in range(clusters.n_clusters)],
        "nearest": [table.as_dict() for table in nearest],
        "centers_file": centers_file,
    }
    return (json.dumps(payload, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _npz_bytes(clusters: LabelClusters, x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, centers=clusters.centers.astype(np.float32), embeddings=x.astype(np.float32),
             cluster_ids=clusters.cluster_ids, labels=np.array(clusters.labels, dtype=str),
             datasets=np.array([clusters._dataset(r) for r in range(len(clusters.labels))], dtype=str))
    return buffer.getvalue()


def _markdown(clusters: LabelClusters, vocabularies, nearest, meta: dict) -> str:
    lines = ["# Label clusters", "",
             f"Vocabularies: {', '.join(f'{v.name} ({len(v)})' for v in vocabularies)}. "
             f"Text model: {meta['model']}" + (f", template `{meta['template']}`" if meta["template"] else "")
             + (f", descriptions for {len(meta['descriptions'])} labels" if meta["descriptions"] else "") + ".",
             "",
             f"Mean Shift, bandwidth {clusters.bandwidth:.4g}: {clusters.n_clusters} clusters for "
             f"{len(clusters.labels)} labels.", ""]
    if clusters.degenerate:
        lines += [f"> **Degenerate setting** (requested bandwidth {clusters.settings['requested_bandwidth']:.3g}): "
                  + "; ".join(clusters.reasons) + ".", ""]
        if clusters.fallback_applied:
            final = clusters.settings["final_reasons"]
            tried = ", ".join(f"{b:.3g}" for b in clusters.settings["bandwidths_tried"][1:])
            lines += [f"> Fallback: the {clusters.settings['min_neighbors']}-nearest-label bandwidth, narrowed while "
                      f"one cluster was too big (tried {tried}); the result is "
                      + ("still degenerate: " + "; ".join(final) if final else "not degenerate") + ".", ""]
    counts = np.bincount(clusters.cluster_ids, minlength=clusters.n_clusters)
    lines += ["## Clusters shared by several labels", "", "| cluster | labels (dataset) |", "|---|---|"]
    for c in (c for c in range(clusters.n_clusters) if counts[c] > 1):
        lines.append(f"| {c} | {', '.join(_member(d, label) for d, label in clusters.members(c))} |")
    alone = [f"{_member(d, label)} #{c}" for c in range(clusters.n_clusters) if counts[c] == 1
             for d, label in clusters.members(c)]
    lines += ["", f"## Labels alone in their cluster ({len(alone)})", "", "; ".join(alone) or "none"]
    lines += ["", "## Nearest labels across vocabularies", ""]
    for table in nearest:
        lines += [f"### {_md(table.source)} -> {_md(table.target)}", "", table.to_markdown()]
    return "\n".join(lines).rstrip() + "\n"


def _member(dataset: str, label: str) -> str:
    return f"{_md(label)} ({_md(dataset)})" if dataset else _md(label)


def _cluster_colours(clusters: LabelClusters) -> list:
    """A distinct colour per shared cluster; singletons grey, so the alignment stands out."""
    from matplotlib import colormaps

    counts = np.bincount(clusters.cluster_ids, minlength=clusters.n_clusters)
    shared = [c for c in range(clusters.n_clusters) if counts[c] > 1]
    if len(shared) <= 20:  # tab20 comes in light/dark pairs: take the dark ones first so neighbours differ
        order = [*range(0, 20, 2), *range(1, 20, 2)]
        colour = {c: colormaps["tab20"](order[i]) for i, c in enumerate(shared)}
    else:
        colour = {c: colormaps["turbo"](i / (len(shared) - 1)) for i, c in enumerate(shared)}
    return [colour.get(int(c), (0.6, 0.6, 0.6, 1.0)) for c in clusters.cluster_ids]


def _figure_png(clusters: LabelClusters, x: np.ndarray) -> bytes:
    """PCA of the label embeddings, coloured by cluster, marker by dataset, every label named."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(x)
    points, centers = pca.transform(x), pca.transform(clusters.centers)
    fig = Figure(figsize=(12, 9), dpi=120)
    FigureCanvasAgg(fig)  # Agg without touching pyplot's global backend
    ax = fig.add_subplot()
    colours = _cluster_colours(clusters)
    datasets = [clusters._dataset(r) for r in range(len(clusters.labels))]
    handles = []
    for marker, name in zip("os^Dvp*hX" * 4, dict.fromkeys(datasets)):
        rows = [r for r, d in enumerate(datasets) if d == name]
        ax.scatter(points[rows, 0], points[rows, 1], c=[colours[r] for r in rows], marker=marker, s=46,
                   edgecolors="black", linewidths=0.4)
        handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="white",
                              markeredgecolor="black", label=name or "labels"))
    for r, label in enumerate(clusters.labels):
        ax.annotate(label, points[r], xytext=(3, 3), textcoords="offset points", fontsize=7)
    shared = np.bincount(clusters.cluster_ids, minlength=clusters.n_clusters) > 1
    ax.scatter(centers[shared, 0], centers[shared, 1], marker="x", c="black", s=18, linewidths=0.8)
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="center of a shared cluster"))
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor=(0.6, 0.6, 0.6), markeredgecolor="black",
                          label="label alone in its cluster"))
    note = f" (fallback; {clusters.settings['requested_bandwidth']:.3g} was degenerate)" if clusters.fallback_applied else ""
    note += " - DEGENERATE" if clusters.final_degenerate else ""
    ax.set_title(f"Label clusters: {clusters.n_clusters} clusters, bandwidth {clusters.bandwidth:.3g}{note}")
    ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%} of variance)")
    ax.legend(handles=handles, loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

@dataclass
class AlignArguments:
    """Arguments of ``train.py align`` (parsable by ``transformers.HfArgumentParser``)."""

    output_dir: str = field(metadata={"help": "Folder for label_clusters.json/.md/.png and label_centers.npz."})
    vocabularies: list[str] = field(
        default_factory=lambda: list(BUILTIN),
        metadata={"help": "Built-in names (mtg-jamendo, cal500, emotify) or files (.json list, or one label a line)."})
    model: str | None = field(
        default=None, metadata={"help": "Sentence-transformer name or folder (default: the packaged all-MiniLM-L6-v2)."})
    template: str | None = field(
        default=None, metadata={"help": "Prompt template with {} for the label, e.g. 'music that sounds {}'."})
    descriptions: str | None = field(
        default=None, metadata={"help": "JSON file {label: [texts]}: extra texts averaged into each label's embedding."})
    bandwidth: float | None = field(default=None, metadata={"help": "Mean Shift bandwidth (default: estimated)."})
    quantile: float | None = field(
        default=None, metadata={"help": "estimate_bandwidth quantile (default: the smallest that keeps "
                                        "--min_neighbors neighbours)."})
    n_samples: int | None = field(default=None, metadata={"help": "Labels sampled by estimate_bandwidth (default: all)."})
    random_state: int = field(default=0, metadata={"help": "Seed of estimate_bandwidth's subsampling."})
    fallback: Literal["min_neighbors", "raise", "none"] = field(
        default="min_neighbors", metadata={"help": "What to do with a degenerate clustering."})
    min_neighbors: int = field(default=1, metadata={"help": "Neighbours the default/fallback bandwidth keeps per label."})
    max_cluster_spread: float = field(
        default=DEFAULT_MAX_CLUSTER_SPREAD,
        metadata={"help": "A cluster of 3+ labels whose mean pairwise distance reaches this fraction of the "
                          "overall mean is flagged as swept together (degenerate)."})
    nearest_k: int = field(default=3, metadata={"help": "Labels per row of the nearest-label tables."})
    batch_size: int = field(default=64, metadata={"help": "Text encoding batch size."})


def _read_descriptions(path: str | None) -> dict | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"descriptions must be a JSON file {{label: [texts]}}, {path!r} does not exist")
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"descriptions file {path!r} must hold a JSON object {{label: [texts]}}")
    return data


def run_align(args: AlignArguments) -> AlignmentResult:
    """Run the alignment for parsed arguments and print a short summary."""
    result = write_alignment(
        args.output_dir, args.vocabularies, model=args.model, template=args.template,
        descriptions=_read_descriptions(args.descriptions), bandwidth=args.bandwidth, quantile=args.quantile,
        n_samples=args.n_samples, random_state=args.random_state, fallback=args.fallback,
        min_neighbors=args.min_neighbors, max_cluster_spread=args.max_cluster_spread, nearest_k=args.nearest_k,
        batch_size=args.batch_size)
    clusters = result.clusters
    print(f"{len(clusters.labels)} labels -> {clusters.n_clusters} clusters (bandwidth {clusters.bandwidth:.4g})"
          + (" DEGENERATE: " + "; ".join(clusters.settings["final_reasons"]) if clusters.final_degenerate else ""))
    for path in result.paths.values():
        print(f"wrote {path}")
    return result


def align_main(argv: Sequence[str] | None = None) -> int:
    """``train.py align``: parse flags (or one .yaml/.json config file) and write the alignment outputs."""
    (args,) = parse_args(AlignArguments, None if argv is None else list(argv))
    run_align(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(align_main())
