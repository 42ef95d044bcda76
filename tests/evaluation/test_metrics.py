"""The multilabel_emotion evaluate module, song aggregation and chance baselines."""

import itertools
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from meralign.metrics import aggregate_songs, chance_baselines, load_metric, multilabel_topk_metrics, top_k_indices


@pytest.fixture(scope="module")
def metric(tmp_path_factory):
    """The metric loaded by local path with every network call recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    patch = pytest.MonkeyPatch()
    for name in ("create_connection", "getaddrinfo"):
        patch.setattr(socket, name, refuse)
    patch.setattr(socket.socket, "connect", refuse)
    try:
        loaded = load_metric(cache_dir=str(tmp_path_factory.mktemp("metric_cache")))
        result = loaded.compute(predictions=[[0.9, 0.1, 0.5]], references=[[1, 0, 0]], top_k=1)
    finally:
        patch.undo()
    assert attempts == [], f"loading or computing the metric tried the network: {attempts}"
    assert result["macro_f1"] == pytest.approx(1 / 3)
    return loaded


def sklearn_reference(scores, refs, k):
    """Independent top-k binarisation (Python sort) + scikit-learn."""
    predicted = np.zeros_like(refs)
    for row, values in enumerate(scores):
        for label in sorted(range(len(values)), key=lambda j: -values[j])[:k]:
            predicted[row, label] = 1
    valid = [j for j in range(refs.shape[1]) if 0 < refs[:, j].sum() < len(refs)]
    return {
        "macro_f1": f1_score(refs, predicted, average="macro", zero_division=0),
        "macro_precision": precision_score(refs, predicted, average="macro", zero_division=0),
        "macro_recall": recall_score(refs, predicted, average="macro", zero_division=0),
        "micro_f1": f1_score(refs, predicted, average="micro", zero_division=0),
        "per_label_f1": list(f1_score(refs, predicted, average=None, zero_division=0)),
        "roc_auc_macro": roc_auc_score(refs[:, valid], scores[:, valid], average="macro"),
        "pr_auc_macro": average_precision_score(refs[:, valid], scores[:, valid], average="macro"),
        "n_auc_labels_skipped": refs.shape[1] - len(valid),
    }


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 2), (2, 3)])
def test_metric_matches_sklearn_on_random_inputs(metric, seed, k):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(40, 7))
    refs = (rng.random((40, 7)) < 0.3).astype(int)
    refs[:, 5] = 0  # never positive: skipped by the AUCs, F1 0, still in the macro mean
    refs[:, 6] = 1  # always positive: skipped by the AUCs
    got = metric.compute(predictions=scores, references=refs, top_k=k)
    expected = sklearn_reference(scores, refs, k)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["n_auc_labels"] == 5 and got["top_k"] == k and got["n_rows"] == 40


def test_metric_hand_example_and_label_names(metric):
    scores = [[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]]
    refs = [[1, 0, 1], [0, 1, 0]]
    got = metric.compute(predictions=scores, references=refs, top_k=1, labels=["happy", "sad", "calm"])
    # predicted {happy}, {sad}: per-label F1 1, 1, 0; micro: TP 2, FP 0, FN 1 -> 4/5
    assert got["per_label_f1"] == {"happy": 1.0, "sad": 1.0, "calm": 0.0}
    assert got["macro_f1"] == pytest.approx(2 / 3)
    assert got["macro_precision"] == pytest.approx(2 / 3) and got["macro_recall"] == pytest.approx(2 / 3)
    assert got["micro_f1"] == pytest.approx(0.8)
    # every label has a positive and a negative row; calm is ranked 2nd then 2nd: AUC 1, AP 1
    assert got["roc_auc_macro"] == pytest.approx(1.0) and got["n_auc_labels_skipped"] == 0


def test_metric_add_batch_equals_one_shot(metric):
    rng = np.random.default_rng(5)
    scores, refs = rng.random((20, 4)), (rng.random((20, 4)) < 0.5).astype(int)
    metric.add_batch(predictions=scores[:8], references=refs[:8])
    metric.add_batch(predictions=scores[8:], references=refs[8:])
    batched = metric.compute(top_k=2)
    assert batched == multilabel_topk_metrics(scores, refs, top_k=2)  # float64 travels exactly


def test_ties_go_to_the_lower_label_index():
    assert top_k_indices(np.array([[0.5, 0.7, 0.5, 0.7]]), 3).tolist() == [[1, 3, 0]]


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(predictions=[[0.1, 0.2]], references=[[1, 0, 0]], top_k=1), ValueError, "shape"),
        (
            dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0]], top_k=0),
            ValueError,
            r"top_k must be in \[1, 3\]",
        ),
        (
            dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0]], top_k=4),
            ValueError,
            r"top_k must be in \[1, 3\]",
        ),
        (dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0]], top_k=1.0), TypeError, "top_k must be an int"),
        (
            dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 2]], top_k=1),
            ValueError,
            "references must be binary",
        ),
        (
            dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0.5]], top_k=1),
            ValueError,
            "references must be binary",
        ),
        (
            dict(predictions=[[0.1, np.nan, 0.3]], references=[[1, 0, 0]], top_k=1),
            ValueError,
            "predictions contains NaN",
        ),
        (
            dict(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0]], top_k=1, labels=["a", "b"]),
            ValueError,
            "labels has 2",
        ),
    ],
)
def test_bad_inputs_name_the_problem(kwargs, error, message):
    with pytest.raises(error, match=message):
        multilabel_topk_metrics(**kwargs)


def test_bad_inputs_through_evaluate(metric):
    with pytest.raises(ValueError, match="references has shape"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[1, 0, 0]], top_k=1)
    with pytest.raises(ValueError, match="references must be binary"):
        metric.compute(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0.5]], top_k=1)
    with pytest.raises(ValueError, match="top_k is required"):
        metric.compute(predictions=[[0.1, 0.2, 0.3]], references=[[1, 0, 0]])


# ---------------------------------------------------------------- song aggregation

SEGMENTS = np.array(
    [
        [0.9, 0.8, 0.1, 0.0],  # song x, votes {0, 1}
        [0.0, 0.0, 1.0, 0.5],  # song y, votes {2, 3}
        [0.1, 0.9, 0.8, 0.0],  # song x, votes {1, 2}
        [0.7, 0.1, 0.2, 0.6],  # song x, votes {0, 3}
    ]
)
IDS = ["x", "y", "x", "x"]


def test_vote_hand_example():
    songs, scores = aggregate_songs(SEGMENTS, IDS, method="vote", top_k=2)
    assert songs == ["x", "y"]
    # x: votes 2, 2, 1, 1 of 3 segments; y: 0, 0, 1, 1 of 1
    assert np.allclose(np.round(scores * [[3], [1]]) / [[3], [1]], [[2 / 3, 2 / 3, 1 / 3, 1 / 3], [0, 0, 1, 1]])
    # x's means: 0.567, 0.6, 0.367, 0.2 -> label 1 ahead of label 0 at equal votes
    assert top_k_indices(scores, 2).tolist() == [[1, 0], [2, 3]]
    assert np.argsort(-scores[0]).tolist() == [1, 0, 2, 3]


def test_vote_tie_is_broken_by_mean_score_not_label_index():
    segments = np.array([[0.7, 0.0, 0.1], [0.0, 0.95, 0.5]])  # one vote each for labels 0 and 1
    _, scores = aggregate_songs(segments, [3, 3], method="vote", top_k=1)
    assert top_k_indices(scores, 1).tolist() == [[1]]  # mean 0.475 beats 0.35
    _, scores = aggregate_songs(segments[:, [1, 0, 2]], [3, 3], method="vote", top_k=1)
    assert top_k_indices(scores, 1).tolist() == [[0]]


def test_mean_aggregation_and_errors():
    songs, scores = aggregate_songs(SEGMENTS, IDS, method="mean")
    assert songs == ["x", "y"]
    assert np.allclose(scores, [SEGMENTS[[0, 2, 3]].mean(axis=0), SEGMENTS[1]])
    with pytest.raises(ValueError, match="song_ids has 3 entries but segment_scores has 4 rows"):
        aggregate_songs(SEGMENTS, IDS[:3])
    with pytest.raises(ValueError, match="top_k is required"):
        aggregate_songs(SEGMENTS, IDS, method="vote")
    with pytest.raises(ValueError, match="method"):
        aggregate_songs(SEGMENTS, IDS, method="max")
    with pytest.raises(ValueError, match="segment_scores contains NaN"):
        aggregate_songs(np.full((1, 2), np.nan), ["x"])


# ---------------------------------------------------------------- chance baselines

TINY = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0]])


def test_random_topk_exact_equals_enumeration():
    subsets = list(itertools.combinations(range(4), 2))
    totals = {"macro_f1": 0.0, "macro_precision": 0.0, "macro_recall": 0.0, "micro_f1": 0.0}
    for choice in itertools.product(subsets, repeat=3):  # all 216 equally likely outcomes
        predicted = np.zeros_like(TINY)
        for row, labels in enumerate(choice):
            predicted[row, list(labels)] = 1
        totals["macro_f1"] += f1_score(TINY, predicted, average="macro", zero_division=0)
        totals["macro_precision"] += precision_score(TINY, predicted, average="macro", zero_division=0)
        totals["macro_recall"] += recall_score(TINY, predicted, average="macro", zero_division=0)
        totals["micro_f1"] += f1_score(TINY, predicted, average="micro", zero_division=0)
    exact = chance_baselines(TINY, top_k=2)["random_topk"]
    for key, total in totals.items():
        assert exact[key] == pytest.approx(total / 216, abs=1e-12), key


def test_random_topk_simulation_agrees_with_exact():
    refs = (np.random.default_rng(3).random((30, 6)) < 0.3).astype(int)
    exact = chance_baselines(refs, top_k=2)["random_topk"]
    simulated = chance_baselines(refs, top_k=2, method="simulate", n_trials=200, seed=1)["random_topk"]
    for key in exact:  # standard error of the 200-trial mean is about 0.003
        assert simulated[key] == pytest.approx(exact[key], abs=0.015), key
    again = chance_baselines(refs, top_k=2, method="simulate", n_trials=200, seed=1)["random_topk"]
    assert again == simulated


def test_frequency_prior_and_ranking_chance_hand_values():
    result = chance_baselines(TINY, top_k=2)
    # reference frequencies 2/3, 2/3, 0, 1/3 -> always {0, 1}: F1 0.8, 0.8, 0, 0
    assert result["frequency_prior"]["predicted_labels"] == [0, 1]
    assert result["frequency_prior"]["macro_f1"] == pytest.approx(0.4)
    # a training prior favouring labels 2 and 3: F1 0 and 1/2 (TP 1, FP 2)
    given = chance_baselines(TINY, top_k=2, prior=[0.0, 0.0, 1.0, 1.0])["frequency_prior"]
    assert given["predicted_labels"] == [2, 3] and given["macro_f1"] == pytest.approx(0.125)
    # label 2 has no positive: PR-AUC chance averages the prevalence of labels 0, 1, 3
    assert result["random_scores"] == {"roc_auc_macro": 0.5, "pr_auc_macro": pytest.approx(5 / 9)}


def test_chance_errors():
    with pytest.raises(ValueError, match="prior must have shape"):
        chance_baselines(TINY, top_k=2, prior=[1.0, 2.0])
    with pytest.raises(ValueError, match="top_k"):
        chance_baselines(TINY, top_k=5)
    with pytest.raises(ValueError, match="references must be binary"):
        chance_baselines(TINY * 3, top_k=1)
    with pytest.raises(ValueError, match="method"):
        chance_baselines(TINY, top_k=1, method="guess")
