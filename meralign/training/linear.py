"""The linear baseline: ridge regression from pooled features to label-space targets, beside the trained head.

Why: a head trained with the triplet loss is only worth its complexity if it transfers to unseen words better
than the plainest map into the same label space. The baseline regresses each training segment's features (the
selected layers, concatenated and standardised) onto the normalised mean of its positive labels' vectors, with
the training datasets weighted equally; the ridge strength is chosen on the training datasets' validation macro
F1 (the head's own selection rule) and the temperature calibrated on the same data. The result is saved as a
head of type "linear" (standardisation folded into its one Linear), so everything that reads heads scores it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from meralign.features.datasets import CacheDatasets
from meralign.head import build_head, head_fields, save_head
from meralign.training.arguments import FitArguments
from meralign.training.calibration import cosine_scores, fit_calibration

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def fit_linear_baseline(args: FitArguments, datasets=None) -> dict:
    """Fit, select and save the ridge baseline into `args.output_dir`; returns its summary."""
    from meralign.alignment.label_space import label_vectors, resolve_label_space
    from meralign.metrics import multilabel_topk_metrics

    datasets = CacheDatasets.of(datasets if datasets is not None else args.cache_dir)
    names = args.train_datasets or datasets.names()
    vocabularies = datasets.vocabularies(names, args.vocabularies)
    data = [datasets.get(n, vocabularies[n], args.pooling) for n in names]
    label_space = resolve_label_space(args.label_space)
    vectors = [
        torch.from_numpy(label_vectors(list(d.vocabulary.labels), label_space, template=args.hypothesis_template))
        for d in data
    ]
    x, y, weights = _training_rows(data, vectors)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    fields = head_fields(args, datasets.meta["feature_layers"], label_space, head_type="linear")
    sizes = (int(datasets.meta["hidden_size"]), int(vectors[0].shape[1]))
    references = [d.labels[d.rows("validation")].numpy().astype(float) for d in data]
    selection = {}
    for alpha in ALPHAS:
        head = _linear_head(fields, sizes, *_ridge((x - mean) / std, y, weights, alpha), mean, std)
        cosines = [cosine_scores(head, d.features[d.rows("validation")], v) for d, v in zip(data, vectors)]
        f1 = [
            multilabel_topk_metrics(c, r.astype(int), top_k=d.vocabulary.top_k)["macro_f1"]
            for c, r, d in zip(cosines, references, data)
        ]
        selection[alpha] = (float(np.mean(f1)), head, cosines)
    alpha = max(selection, key=lambda a: selection[a][0])
    _, head, cosines = selection[alpha]
    calibration = fit_calibration(cosines, references)  # the chosen strength's validation cosines
    summary = {
        "model": "linear",
        "alpha": alpha,
        "best_val_macro_f1": selection[alpha][0],
        "val_macro_f1_by_alpha": {str(a): f1 for a, (f1, *_) in selection.items()},
    }
    save_head(head, fields, sizes, args.output_dir, {**summary, **calibration, "train_datasets": names})
    Path(args.output_dir, "linear_selection.json").write_text(json.dumps(summary, indent=1) + "\n")
    return {**summary, **calibration}


def _training_rows(data, vectors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features [n, layers*hidden], targets [n, dim] (normalised mean of positive labels) and row weights that
    give every training dataset the same total weight (balanced, like the head's sampling)."""
    xs, ys, ws = [], [], []
    for d, v in zip(data, vectors):
        rows = d.rows("train")
        labels = d.labels[rows].float()
        target = torch.nn.functional.normalize(labels @ v / labels.sum(dim=1, keepdim=True), dim=-1)
        xs.append(d.features[rows].float().flatten(1).numpy())
        ys.append(target.numpy())
        ws.append(np.full(len(rows), 1.0 / len(rows)))
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64), np.concatenate(ws)


def _ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ridge regression with an unpenalised intercept (scikit-learn's Ridge): coefficients, intercept."""
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha).fit(x, y, sample_weight=weights * len(weights))
    return model.coef_, model.intercept_


def _linear_head(fields: dict, sizes, coef: np.ndarray, intercept: np.ndarray, mean, std):
    """A "linear" head computing the ridge map on raw features: the standardisation is folded into the weights."""
    head = build_head(fields, *sizes)
    with torch.no_grad():
        head.net.weight.copy_(torch.from_numpy(coef / std).float())
        head.net.bias.copy_(torch.from_numpy(intercept - (coef / std) @ mean).float())
    return head.eval()
