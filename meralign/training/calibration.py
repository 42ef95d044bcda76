"""Calibration of a trained head on the training datasets' validation data: softmax temperature, the
multi-label logistic, and the affect scale of valence and arousal."""

from __future__ import annotations

import math

import numpy as np
import torch

from scoring_meralign import AFFECT_AXES, affect_coordinates, affect_readout


@torch.inference_mode()
def projected(head: torch.nn.Module, features: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """The head's audio embeddings [n, dim] of cached features (float64 numpy)."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    out = [head(features[i : i + batch_size].to(device, torch.float32)) for i in range(0, len(features), batch_size)]
    head.train(was_training)
    return torch.cat(out).double().cpu().numpy()


def cosine_scores(
    head: torch.nn.Module, features: torch.Tensor, label_embeddings: torch.Tensor, batch_size: int = 4096
) -> np.ndarray:
    """Cosine between projected segments and label embeddings, [n, V] (float64 numpy)."""
    if not len(features):
        return np.zeros((0, len(label_embeddings)))
    return embedding_cosines(projected(head, features, batch_size), label_embeddings)


def embedding_cosines(audio: np.ndarray, label_embeddings: torch.Tensor) -> np.ndarray:
    """Cosine [n, V] (float64) between the head's audio embeddings (`projected`) and label embeddings."""
    return audio @ label_embeddings.double().numpy().T


def fit_calibration(cosines: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Temperature for the softmax and (scale, bias) for independent sigmoid scores, on validation data.

    The softmax temperature minimises the cross-entropy against each segment's label distribution (its
    positives, equally weighted); the sigmoid is a one-feature logistic regression of label presence on
    the cosine. Both are fitted on the training datasets' validation splits only.
    """
    from scipy.optimize import minimize_scalar
    from sklearn.linear_model import LogisticRegression

    def nll(log_scale: float) -> float:
        total, count = 0.0, 0
        for cos, ref in zip(cosines, references):
            logits = math.exp(log_scale) * cos
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            target = ref / ref.sum(axis=1, keepdims=True)
            total -= (target * log_probs).sum()
            count += len(cos)
        return total / max(count, 1)

    log_scale = float(minimize_scalar(nll, bounds=(0.0, math.log(100.0)), method="bounded").x)
    x = np.concatenate([c.reshape(-1) for c in cosines])[:, None]
    y = np.concatenate([r.reshape(-1) for r in references]).astype(int)
    calibration = {"logit_scale": log_scale}
    if 0 < y.sum() < len(y):
        regression = LogisticRegression(C=1e4).fit(x, y)
        calibration.update(
            multilabel_scale=float(regression.coef_[0, 0]), multilabel_bias=float(regression.intercept_[0])
        )
    return calibration


def fit_affect_calibration(
    audio: list[np.ndarray],
    label_vectors: list,
    references: list[np.ndarray],
    label_space: dict,
    anchor_vectors: np.ndarray,
    logit_scale: float,
) -> dict:
    """`{"valence": [scale, bias], "arousal": [scale, bias]}`: least squares from an audio embedding's raw reading
    through the anchors (scoring_meralign.affect_readout) to its labels' place on the pole-word scale (the mean of
    its positive labels' coordinates), over the training datasets' validation segments."""
    calibration = {}
    raw = {axis: [] for axis in AFFECT_AXES}
    targets = {axis: [] for axis in raw}
    for embeds, vectors, refs in zip(audio, label_vectors, references):
        label_coordinates = affect_coordinates(np.asarray(vectors, dtype=np.float64), label_space)
        readings = affect_readout(embeds, label_space, anchor_vectors, logit_scale)
        for axis in raw:
            raw[axis].append(readings[axis])
            targets[axis].append(refs @ label_coordinates[axis] / refs.sum(axis=1))
    for axis in raw:
        x, y = np.concatenate(raw[axis]), np.concatenate(targets[axis])
        scale, bias = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
        calibration[axis] = [float(scale), float(bias)]
    return calibration
