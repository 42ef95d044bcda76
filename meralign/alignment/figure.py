"""The alignment figure: a PCA of the label embeddings, coloured by cluster, marker by dataset."""

from __future__ import annotations

import io

import numpy as np

from meralign.alignment.clustering import LabelClusters


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


def figure_png(clusters: LabelClusters, x: np.ndarray) -> bytes:
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
    datasets = [clusters.dataset_of(r) for r in range(len(clusters.labels))]
    handles = []
    for marker, name in zip("os^Dvp*hX" * 4, dict.fromkeys(datasets)):
        rows = [r for r, d in enumerate(datasets) if d == name]
        ax.scatter(
            points[rows, 0],
            points[rows, 1],
            c=[colours[r] for r in rows],
            marker=marker,
            s=46,
            edgecolors="black",
            linewidths=0.4,
        )
        handles.append(
            Line2D(
                [],
                [],
                marker=marker,
                linestyle="",
                markerfacecolor="white",
                markeredgecolor="black",
                label=name or "labels",
            )
        )
    for r, label in enumerate(clusters.labels):
        ax.annotate(label, points[r], xytext=(3, 3), textcoords="offset points", fontsize=7)
    shared = np.bincount(clusters.cluster_ids, minlength=clusters.n_clusters) > 1
    ax.scatter(centers[shared, 0], centers[shared, 1], marker="x", c="black", s=18, linewidths=0.8)
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="center of a shared cluster"))
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor=(0.6, 0.6, 0.6),
            markeredgecolor="black",
            label="label alone in its cluster",
        )
    )
    note = (
        f" (fallback; {clusters.settings['requested_bandwidth']:.3g} was degenerate)"
        if clusters.fallback_applied
        else ""
    )
    note += " - DEGENERATE" if clusters.final_degenerate else ""
    ax.set_title(f"Label clusters: {clusters.n_clusters} clusters, bandwidth {clusters.bandwidth:.3g}{note}")
    ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%} of variance)")
    ax.legend(handles=handles, loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
