"""`write_alignment`: embed and cluster vocabularies, and write the four outputs (JSON, centres, report, figure)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meralign.alignment.clustering import (
    LabelClusters,
    check_embeddings,
    cluster_labels,
)
from meralign.alignment.figure import figure_png
from meralign.alignment.nearest import NearestLabels, markdown_text, nearest_labels
from meralign.alignment.text import embed_labels
from meralign.files import atomic_write_bytes
from meralign.towers import DEFAULT_TEXT_MODEL_ID, default_text_model_path
from meralign.vocabularies import Vocabulary, resolve


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
    vocabularies = tuple(resolve(v) for v in vocabularies)
    if not vocabularies:
        raise ValueError("vocabularies is empty: give at least one vocabulary (a built-in name, a file or a list)")
    names = [v.name for v in vocabularies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"vocabularies must have distinct names, got {repeated} more than once")
    return vocabularies


def _embed_vocabularies(
    vocabularies: tuple[Vocabulary, ...], embeddings, model, template, descriptions, batch_size: int, label_space
) -> np.ndarray:
    """One row per (vocabulary, label). Each distinct string is embedded once."""
    if embeddings is not None:
        missing = [v.name for v in vocabularies if v.name not in embeddings]
        if missing:
            raise ValueError(f"embeddings has no entry for vocabularies {missing}")
        return np.concatenate([check_embeddings(embeddings[v.name], len(v)) for v in vocabularies])
    distinct = list(dict.fromkeys(label for v in vocabularies for label in v.labels))
    if descriptions:
        used = {label: texts for label, texts in descriptions.items() if label in set(distinct)}
        if not used:
            raise ValueError("descriptions matches none of the labels of the chosen vocabularies")
        descriptions = used
    vectors = embed_labels(
        distinct,
        model=model,
        template=template,
        descriptions=descriptions,
        batch_size=batch_size,
        label_space=label_space,
    )
    index = {label: i for i, label in enumerate(distinct)}
    return vectors[[index[label] for v in vocabularies for label in v.labels]]


def write_alignment(
    output_dir: str | Path,
    vocabularies,
    *,
    model=None,
    template: str | None = None,
    descriptions: Mapping[str, str | Sequence[str]] | None = None,
    embeddings: Mapping[str, np.ndarray] | None = None,
    nearest_k: int = 3,
    batch_size: int = 64,
    label_space: dict | None = None,
    **clustering,
) -> AlignmentResult:
    """Embed and cluster the labels of ``vocabularies`` and write the four outputs into ``output_dir``.

    Writes ``label_clusters.json``, ``label_centers.npz``, ``label_clusters.md`` and
    ``label_clusters.png``. ``embeddings`` (vocabulary name -> ``[n_labels, d]``) replaces the text
    model, e.g. to show the paper's published label embeddings; ``label_space`` embeds the labels as a model with
    that label space does (its templates replace ``template``). ``clustering`` holds the Mean Shift
    settings of :func:`meralign.alignment.clustering.cluster_labels` (bandwidth, quantile, fallback, ...).
    """
    vocabularies = _load_vocabularies(vocabularies)
    x = _embed_vocabularies(vocabularies, embeddings, model, template, descriptions, batch_size, label_space)
    labels = [label for v in vocabularies for label in v.labels]
    datasets = [v.name for v in vocabularies for _ in v.labels]
    clusters = cluster_labels(x, labels, datasets=datasets, **clustering)
    nearest = _nearest_tables(vocabularies, x, nearest_k)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": _model_name(model, embeddings),
        "template": template,
        "label_space": None if label_space is None else label_space.get("recipe", {}).get("source", "given"),
        "descriptions": {
            label: [texts] if isinstance(texts, str) else list(texts)
            for label, texts in descriptions.items()
            if label in set(labels)
        }
        if descriptions
        else None,
    }
    paths = {
        "json": out / "label_clusters.json",
        "centers": out / "label_centers.npz",
        "report": out / "label_clusters.md",
        "figure": out / "label_clusters.png",
    }
    atomic_write_bytes(paths["json"], _json_bytes(clusters, vocabularies, nearest, meta, paths["centers"].name))
    atomic_write_bytes(paths["centers"], _npz_bytes(clusters, x))
    atomic_write_bytes(paths["report"], _markdown(clusters, vocabularies, nearest, meta).encode("utf-8"))
    atomic_write_bytes(paths["figure"], figure_png(clusters, x))
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
    block = {v.name: x[starts[i] : starts[i + 1]] for i, v in enumerate(vocabularies)}
    return tuple(
        nearest_labels(
            block[a.name], a.labels, block[b.name], b.labels, k=min(k, len(b)), source=a.name, target=b.name
        )
        for a in vocabularies
        for b in vocabularies
        if a.name != b.name
    )


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
        "labels": [
            {"label": label, "dataset": clusters.dataset_of(row), "cluster": int(clusters.cluster_ids[row])}
            for row, label in enumerate(clusters.labels)
        ],
        "assignments": clusters.by_dataset(),
        "clusters": [
            {"id": c, "members": [{"dataset": d, "label": lab} for d, lab in clusters.members(c)]}
            for c in range(clusters.n_clusters)
        ],
        "nearest": [table.as_dict() for table in nearest],
        "centers_file": centers_file,
    }
    return (json.dumps(payload, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _npz_bytes(clusters: LabelClusters, x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        centers=clusters.centers.astype(np.float32),
        embeddings=x.astype(np.float32),
        cluster_ids=clusters.cluster_ids,
        labels=np.array(clusters.labels, dtype=str),
        datasets=np.array([clusters.dataset_of(r) for r in range(len(clusters.labels))], dtype=str),
    )
    return buffer.getvalue()


def _markdown(clusters: LabelClusters, vocabularies, nearest, meta: dict) -> str:
    lines = [
        "# Label clusters",
        "",
        f"Vocabularies: {', '.join(f'{v.name} ({len(v)})' for v in vocabularies)}. "
        f"Text model: {meta['model']}"
        + (f", template `{meta['template']}`" if meta["template"] else "")
        + (f", descriptions for {len(meta['descriptions'])} labels" if meta["descriptions"] else "")
        + ".",
        "",
        f"Mean Shift, bandwidth {clusters.bandwidth:.4g}: {clusters.n_clusters} clusters for "
        f"{len(clusters.labels)} labels.",
        "",
    ]
    if clusters.degenerate:
        lines += [
            f"> **Degenerate setting** (requested bandwidth {clusters.settings['requested_bandwidth']:.3g}): "
            + "; ".join(clusters.reasons)
            + ".",
            "",
        ]
        if clusters.fallback_applied:
            final = clusters.settings["final_reasons"]
            tried = ", ".join(f"{b:.3g}" for b in clusters.settings["bandwidths_tried"][1:])
            lines += [
                f"> Fallback: the {clusters.settings['min_neighbors']}-nearest-label bandwidth, narrowed while "
                f"one cluster was too big (tried {tried}); the result is "
                + ("still degenerate: " + "; ".join(final) if final else "not degenerate")
                + ".",
                "",
            ]
    counts = np.bincount(clusters.cluster_ids, minlength=clusters.n_clusters)
    lines += ["## Clusters shared by several labels", "", "| cluster | labels (dataset) |", "|---|---|"]
    for c in (c for c in range(clusters.n_clusters) if counts[c] > 1):
        lines.append(f"| {c} | {', '.join(_member(d, label) for d, label in clusters.members(c))} |")
    alone = [
        f"{_member(d, label)} #{c}"
        for c in range(clusters.n_clusters)
        if counts[c] == 1
        for d, label in clusters.members(c)
    ]
    lines += ["", f"## Labels alone in their cluster ({len(alone)})", "", "; ".join(alone) or "none"]
    lines += ["", "## Nearest labels across vocabularies", ""]
    for table in nearest:
        lines += [f"### {markdown_text(table.source)} -> {markdown_text(table.target)}", "", table.to_markdown()]
    return "\n".join(lines).rstrip() + "\n"


def _member(dataset: str, label: str) -> str:
    return f"{markdown_text(label)} ({markdown_text(dataset)})" if dataset else markdown_text(label)
