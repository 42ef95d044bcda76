"""Cross-vocabulary nearest labels: for each label of one vocabulary, its closest labels in another."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from meralign.alignment.clustering import check_embeddings
from meralign.alignment.text import normalise_rows
from scoring_meralign import validate_labels


@dataclass(frozen=True)
class NearestLabels:
    """For each label of ``source``, its ``k`` nearest labels of ``target`` with their cosine."""

    source: str
    target: str
    rows: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]

    def to_markdown(self) -> str:
        source, target = markdown_text(self.source), markdown_text(self.target)
        header = f"| {source} label | nearest {target} labels (cosine) |\n|---|---|\n"
        lines = [
            f"| {markdown_text(label)} | "
            + ", ".join(f"{markdown_text(other)} ({cos:.2f})" for other, cos in near)
            + " |"
            for label, near in self.rows
        ]
        return header + "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "rows": [
                {"label": label, "nearest": [{"label": o, "cosine": c} for o, c in near]} for label, near in self.rows
            ],
        }


def markdown_text(text: str) -> str:
    return text.replace("|", "\\|")


def nearest_labels(
    embeddings_a,
    labels_a: Sequence[str],
    embeddings_b,
    labels_b: Sequence[str],
    *,
    k: int = 3,
    source: str = "A",
    target: str = "B",
) -> NearestLabels:
    """Cosine nearest neighbours of every label of A among the labels of B, best first."""
    labels_a, labels_b = validate_labels(labels_a, "labels_a"), validate_labels(labels_b, "labels_b")
    a = normalise_rows(check_embeddings(embeddings_a, len(labels_a)), "embeddings_a")
    b = normalise_rows(check_embeddings(embeddings_b, len(labels_b)), "embeddings_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings_a has dimension {a.shape[1]} but embeddings_b has {b.shape[1]}: they must match")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    cosine = a @ b.T
    order = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
    rows = tuple(
        (label, tuple((labels_b[j], float(cosine[i, j])) for j in order[i])) for i, label in enumerate(labels_a)
    )
    return NearestLabels(source, target, rows)
