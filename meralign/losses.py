"""Training losses: the cosine triplet loss on label-embedding targets, the alignment regulariser, and two
measured alternatives (a contrastive softmax over every label; an affect loss on the valence/arousal axes).

Method of arXiv 2410.11522: an audio embedding z (L2-normalised by the head) is pulled towards the
mean text embedding of its segment's positive labels and pushed from the mean of a few random
non-positive labels; a regulariser over Mean Shift cluster ids (clusters of label embeddings
across the training vocabularies) spreads embeddings of different clusters apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")
REGULARIZER_FORMS = ("push", "pull_push")
OBJECTIVES = ("triplet", "contrastive")


def triplet_cosine_loss(
    z: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """max(0, cos(z, negative) - cos(z, positive) + margin) per row, then reduced.

    Cosines are taken, not dot products, because the targets are means of unit vectors and so
    shorter than 1. The paper uses margin 1.0.

    Args:
        z, positive, negative: [B, D] float tensors.
        reduction: "mean", "sum" or "none" (a [B] tensor).
    """
    _check_matrix(z, "z")
    for name, tensor in (("positive", positive), ("negative", negative)):
        _check_matrix(tensor, name)
        if tensor.shape != z.shape:
            raise ValueError(f"{name} must have the shape of z {tuple(z.shape)}, got {tuple(tensor.shape)}")
    losses = torch.relu(F.cosine_similarity(z, negative, dim=1) - F.cosine_similarity(z, positive, dim=1) + margin)
    return _reduce(losses, reduction)


def label_contrastive_loss(
    z: torch.Tensor,
    label_matrix: torch.Tensor,
    label_embeddings: torch.Tensor,
    temperature: float = 0.05,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of a softmax over the cosines of z to EVERY label of its vocabulary, against its positives.

    The target puts equal mass on each positive label. Unlike the triplet loss with a mean of a few random
    negatives, every wrong label competes, the nearest one most: this is the ranking that scoring does.

    Args:
        z: [B, D] audio embeddings; label_matrix: [B, L] multi-hot; label_embeddings: [L, D].
        temperature: divides the cosines (CLIP-style); smaller sharpens the competition.
        reduction: "mean", "sum" or "none" (a [B] tensor).
    """
    _check_matrix(z, "z")
    mask = _check_label_matrix(label_matrix)
    _check_matrix(label_embeddings, "label_embeddings")
    if label_embeddings.shape != (mask.shape[1], z.shape[1]) or mask.shape[0] != z.shape[0]:
        raise ValueError(
            f"shapes do not agree: z {tuple(z.shape)}, label_matrix {tuple(mask.shape)}, label_embeddings "
            f"{tuple(label_embeddings.shape)}; expected [B, D], [B, L] and [L, D]"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    _require_rows(mask.any(dim=1), "has no positive label")
    labels = F.normalize(label_embeddings.to(z.dtype), dim=1)
    log_probs = (F.normalize(z, dim=1) @ labels.T / temperature).log_softmax(dim=1)
    target = mask.to(z.dtype) / mask.sum(dim=1, keepdim=True)
    return _reduce(-(target * log_probs).sum(dim=1), reduction)


def affect_loss(
    z: torch.Tensor,
    label_matrix: torch.Tensor,
    label_coordinates: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error between the audio embedding's place on the affect axes and its positive labels' mean place.

    A unit vector's coordinates are `normalize(z) @ weight + bias` (the label space's axes, scaled so the pole words
    sit at -1 and +1: scoring_meralign.affect_scale); the labels' are `label_coordinates` [L, A], the same
    map applied to their vectors. It asks the head to carry valence and arousal explicitly, which the triplet loss
    weighs no more than any other direction.

    Args:
        z: [B, D]; label_matrix: [B, L] multi-hot; label_coordinates: [L, A]; weight: [D, A]; bias: [A].
    """
    mask = _check_label_matrix(label_matrix)
    _require_rows(mask.any(dim=1), "has no positive label")
    target = _mean_rows(mask, label_coordinates.to(z.dtype))
    predicted = F.normalize(z, dim=1) @ weight.to(z.dtype) + bias.to(z.dtype)
    return ((predicted - target) ** 2).mean()


def positive_negative_targets(
    label_matrix: torch.Tensor,
    label_embeddings: torch.Tensor,
    n_negatives: int = 5,
    generator: Optional[torch.Generator] = None,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplet targets: the mean embedding of each row's positive labels and of sampled negatives.

    Negatives: ``n_negatives`` labels drawn uniformly WITHOUT replacement among the row's
    non-positive labels (all of them when fewer exist), by ranking uniform random scores with
    positives masked out -- one ``topk`` for the whole batch, deterministic for a given generator.

    Args:
        label_matrix: [B, L] multi-hot (bool, or numbers that are all 0/1).
        label_embeddings: [L, D] label text embeddings.
        n_negatives: labels averaged into each negative target (the paper: 5).
        generator: torch.Generator for reproducible sampling (on label_matrix's device).
        normalize: L2-normalise both means. False by default, as in the paper: the plain mean is
            used, and the triplet loss takes cosines, which ignore the norm anyway.

    Returns:
        (positive [B, D], negative [B, D]) in label_embeddings' dtype.
    """
    mask = _check_label_matrix(label_matrix)
    _check_matrix(label_embeddings, "label_embeddings")
    if label_embeddings.shape[0] != mask.shape[1]:
        raise ValueError(
            f"label_embeddings has {label_embeddings.shape[0]} rows but label_matrix has "
            f"{mask.shape[1]} label columns: they must match"
        )
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    _require_rows(mask.any(dim=1), "has no positive label")
    _require_rows((~mask).any(dim=1), "has no negative label (every label is positive)")

    scores = torch.rand(mask.shape, generator=generator, device=mask.device)
    scores = scores.masked_fill(mask, -1.0)  # rand is in [0, 1): positives rank below every negative
    chosen = scores.topk(min(n_negatives, mask.shape[1]), dim=1).indices
    negatives = torch.zeros_like(mask).scatter(1, chosen, True) & ~mask
    positive = _mean_rows(mask, label_embeddings)
    negative = _mean_rows(negatives, label_embeddings)
    if normalize:
        positive, negative = F.normalize(positive, dim=1), F.normalize(negative, dim=1)
    return positive, negative


def primary_cluster_ids(
    label_matrix: torch.Tensor, label_clusters: torch.Tensor, label_weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """One cluster id per row for :func:`alignment_regularizer`: the cluster of its primary label.

    The primary label is the positive label with the largest ``label_weights`` entry (e.g. vote
    counts, [B, L]), ties and the unweighted case going to the first positive label (lowest index).

    Args:
        label_matrix: [B, L] multi-hot; every row needs a positive label.
        label_clusters: [L] long, the Mean Shift cluster id of each label.
    """
    mask = _check_label_matrix(label_matrix)
    if label_clusters.ndim != 1 or label_clusters.shape[0] != mask.shape[1]:
        raise ValueError(f"label_clusters must have shape ({mask.shape[1]},), got {tuple(label_clusters.shape)}")
    _require_rows(mask.any(dim=1), "has no positive label")
    weights = torch.zeros(mask.shape, device=mask.device) if label_weights is None else label_weights.float()
    if weights.shape != mask.shape:
        raise ValueError(
            f"label_weights must have the shape of label_matrix {tuple(mask.shape)}, got {tuple(weights.shape)}"
        )
    n_labels = mask.shape[1]
    # Two keys, not weight + small index bonus: a bonus can be swallowed by large weights' rounding.
    key = weights.masked_fill(~mask, float("-inf"))
    best = key.max(dim=1, keepdim=True).values
    candidates = mask & (key == best)
    first = torch.where(candidates, torch.arange(n_labels, device=mask.device), n_labels).min(dim=1).values
    return label_clusters.to(mask.device).long()[first]


def alignment_regularizer(
    z: torch.Tensor, cluster_ids: torch.Tensor, form: str = "push", margin: float = 0.0
) -> torch.Tensor:
    """Alignment regularisation over Mean Shift cluster ids, WITHOUT the weight alpha.

    With c_i = cos(z_i, z_j) between batch rows, O(i) = {j : cluster_j != cluster_i} and
    S(i) = {j != i : cluster_j == cluster_i}:

    - ``"push"`` (the paper's "v2"): mean_i relu(1 + mean_{j in O(i)} c_ij). Rows with empty O(i)
      contribute 0 and still count in the mean over all B rows (so a single-cluster batch gives 0).
    - ``"pull_push"``: mean_i [ mean_{j in S(i)} (1 - c_ij) + mean_{j in O(i)} relu(c_ij - margin) ],
      each inner mean 0 when its set is empty. It also pulls same-cluster embeddings together.

    The caller multiplies by alpha (see :class:`MERAlignLoss`). Never NaN: empty sets give 0.

    Args:
        z: [B, D] audio embeddings (normalised here again, so cosines are exact).
        cluster_ids: [B] integer cluster ids, one per row: the cluster of the segment's primary
            label, chosen by the caller (see :func:`primary_cluster_ids`).
        margin: the push margin of ``"pull_push"``; ``"push"`` has its fixed 1 and rejects it.
    """
    _check_matrix(z, "z")
    if cluster_ids.ndim != 1 or cluster_ids.shape[0] != z.shape[0]:
        raise ValueError(
            f"cluster_ids must have shape ({z.shape[0]},) (one id per row of z), got {tuple(cluster_ids.shape)}"
        )
    if cluster_ids.is_floating_point() or cluster_ids.dtype == torch.bool:
        raise TypeError(f"cluster_ids must be an integer tensor, got {cluster_ids.dtype}")
    if form not in REGULARIZER_FORMS:
        raise ValueError(f"form must be one of {REGULARIZER_FORMS}, got {form!r}")
    if form == "push" and margin != 0.0:
        raise ValueError('margin is only used by form="pull_push"; "push" has the fixed margin 1 of the paper')
    unit = F.normalize(z, dim=1)
    cosines = unit @ unit.T
    same = cluster_ids.to(z.device)[:, None] == cluster_ids.to(z.device)[None, :]
    other = ~same
    push_term = _masked_row_mean(cosines, other)
    if form == "push":
        return torch.where(other.any(dim=1), torch.relu(1.0 + push_term), torch.zeros_like(push_term)).mean()
    same &= ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    pull = _masked_row_mean(1.0 - cosines, same)
    push = _masked_row_mean(torch.relu(cosines - margin), other)
    return (pull + push).mean()


@dataclass
class DatasetBatch:
    """One training dataset's part of a step: projected segments `z` [B, D], their multi-hot labels [B, L], the
    dataset's triplet targets [L, D] (label embeddings or cluster centres) and its labels' cluster ids [L]."""

    z: torch.Tensor
    label_matrix: torch.Tensor
    targets: torch.Tensor
    label_clusters: torch.Tensor
    label_affect: Optional[torch.Tensor] = None


class MERAlignLoss(nn.Module):
    """The training objective, summed over the training datasets' batches: the label objective (the paper's triplet
    loss, or the contrastive softmax over every label), plus alpha times the alignment regulariser over one batch
    holding all of them (so it pushes apart clusters across vocabularies), plus `affect_weight` times the affect
    loss (:func:`affect_loss`; off by default).

    The paper uses alpha 2.5 (1.0 for its test-on-CAL500 run); `regularizer="none"` trains on the label objective
    alone. `affect_map`: (weight [D, A], bias [A]), a unit vector's affect coordinates; needed when
    affect_weight > 0, with each batch's `label_affect`.
    """

    def __init__(
        self,
        margin: float = 1.0,
        alpha: float = 2.5,
        n_negatives: int = 5,
        regularizer: str = "push",
        regularizer_margin: float = 0.0,
        normalize_targets: bool = False,
        objective: str = "triplet",
        temperature: float = 0.05,
        affect_weight: float = 0.0,
        affect_map: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if regularizer not in (*REGULARIZER_FORMS, "none"):
            raise ValueError(f"regularizer must be one of {(*REGULARIZER_FORMS, 'none')}, got {regularizer!r}")
        if alpha < 0 or affect_weight < 0:
            raise ValueError(f"alpha and affect_weight must be >= 0, got {alpha} and {affect_weight}")
        if affect_weight > 0 and affect_map is None:
            raise ValueError("affect_weight > 0 needs affect_map (the label space's affect axes)")
        self.objective, self.temperature = objective, temperature
        self.margin, self.alpha, self.n_negatives = margin, alpha, n_negatives
        self.regularizer, self.regularizer_margin = regularizer, regularizer_margin
        self.normalize_targets = normalize_targets
        self.affect_weight, self.affect_map = affect_weight, affect_map

    def forward(
        self, batches: Sequence[DatasetBatch], generator: Optional[torch.Generator] = None
    ) -> dict[str, torch.Tensor]:
        """Returns {"loss", "objective", "regularizer", "affect"}; the last two unweighted (0 when off)."""
        if not batches:
            raise ValueError("batches is empty: give one DatasetBatch per training dataset")
        zero = torch.zeros((), dtype=batches[0].z.dtype, device=batches[0].z.device)
        objective = sum((self._label_objective(b, generator) for b in batches), zero)  # datasets in order
        regularizer = zero
        if self.regularizer != "none":
            z = torch.cat([batch.z for batch in batches])
            clusters = torch.cat([primary_cluster_ids(b.label_matrix, b.label_clusters).to(z.device) for b in batches])
            regularizer = alignment_regularizer(z, clusters, form=self.regularizer, margin=self.regularizer_margin)
        affect = zero
        if self.affect_weight > 0:
            affect = sum((affect_loss(b.z, b.label_matrix, b.label_affect, *self.affect_map) for b in batches), zero)
        loss = objective + self.alpha * regularizer + self.affect_weight * affect
        return {"loss": loss, "objective": objective, "regularizer": regularizer, "affect": affect}

    def _label_objective(self, batch: DatasetBatch, generator: Optional[torch.Generator]) -> torch.Tensor:
        device = batch.z.device
        if self.objective == "contrastive":
            return label_contrastive_loss(
                batch.z, batch.label_matrix.to(device), batch.targets.to(device), self.temperature
            )
        positive, negative = positive_negative_targets(  # negatives drawn from the one generator, dataset by dataset
            batch.label_matrix, batch.targets, self.n_negatives, generator=generator, normalize=self.normalize_targets
        )
        return triplet_cosine_loss(batch.z, positive.to(device), negative.to(device), margin=self.margin)


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-row losses [B] reduced: "mean", "sum" or "none"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" else losses


def _masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each row's masked entries; 0 for a row with none (never 0/0)."""
    counts = mask.sum(dim=1)
    return (values * mask).sum(dim=1) / counts.clamp(min=1)


def _mean_rows(mask: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    weights = mask.to(embeddings.dtype)
    return (weights @ embeddings) / weights.sum(dim=1, keepdim=True)


def _check_matrix(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != 2 or not tensor.is_floating_point():
        raise ValueError(f"{name} must be a 2-D float tensor, got {tensor.ndim}-D {tensor.dtype}")


def _check_label_matrix(label_matrix: torch.Tensor) -> torch.Tensor:
    """Return the multi-hot label matrix as bool [B, L]; values other than 0/1 are an error."""
    if not isinstance(label_matrix, torch.Tensor):
        raise TypeError(f"label_matrix must be a torch.Tensor, got {type(label_matrix).__name__}")
    if label_matrix.ndim != 2:
        raise ValueError(f"label_matrix must be 2-D [B, L] multi-hot, got shape {tuple(label_matrix.shape)}")
    if label_matrix.dtype != torch.bool and not ((label_matrix == 0) | (label_matrix == 1)).all():
        raise ValueError("label_matrix must be multi-hot: every entry 0 or 1 (or bool)")
    return label_matrix.bool()


def _require_rows(ok: torch.Tensor, problem: str) -> None:
    if not ok.all():
        rows = torch.nonzero(~ok).flatten().tolist()
        raise ValueError(f"label_matrix row(s) {rows[:10]}{' ...' if len(rows) > 10 else ''} {problem}")
