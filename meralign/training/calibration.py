"""Calibration of a trained head on the training datasets' validation data: softmax temperature and the
multi-label logistic."""

from __future__ import annotations

import math

import numpy as np
import torch


@torch.inference_mode()
def cosine_scores(
    head: torch.nn.Module, features: torch.Tensor, label_embeddings: torch.Tensor, batch_size: int = 4096
) -> np.ndarray:
    """Cosine between projected segments and label embeddings, [n, V] (float64 numpy)."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    out = [
        head(features[i : i + batch_size].to(device, torch.float32)) @ label_embeddings.to(device).t()
        for i in range(0, len(features), batch_size)
    ]
    head.train(was_training)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, len(label_embeddings)))


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
