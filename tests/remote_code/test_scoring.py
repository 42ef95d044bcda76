"""The scoring rules (scoring_meralign): labels, templates, segment scores, aggregation, ranking.

The vote is implemented once; the last tests check that the pipeline and the protocol's song-level vote rank
every song the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoring_meralign as S
from meralign.metrics import aggregate_songs


def test_validate_labels_rules():
    assert S.validate_labels("a, b ,c") == ["a", "b", "c"]
    assert S.validate_labels(("x", "y"), "labels") == ["x", "y"]
    with pytest.raises(ValueError, match="labels contains the label 'x' more than once"):
        S.validate_labels(["x", "x"], "labels")
    with pytest.raises(ValueError, match="vocab is empty"):
        S.validate_labels([], "vocab")
    with pytest.raises(TypeError, match="vocab must be a list of strings, got a single string"):
        S.validate_labels("a, b", "vocab", allow_string=False)
    with pytest.raises(TypeError, match="must contain only strings"):
        S.validate_labels(["a", 3])
    with pytest.raises(TypeError, match="candidate_labels must be a list of strings or a comma-separated"):
        S.validate_labels({"a"})


@pytest.mark.parametrize("template", ["{}", "{0}", "music that sounds {}", "{{literal}} {}"])
def test_templates_with_one_slot(template):
    assert S.check_template(template) == template
    assert S.apply_template(template, ["sad"]) == [template.format("sad")]


@pytest.mark.parametrize("template", ["{}{}", "{label}", "{x} {}", "{}{", "{{}}", "no slot", "{!r}", "{:>9}", 3])
def test_templates_refused_name_the_argument(template):
    with pytest.raises(ValueError, match="hypothesis_template must be a string containing '{}' exactly once"):
        S.check_template(template)


def test_segment_scores_softmax_and_sigmoid():
    cosine = np.array([[0.2, 0.1, -0.3], [0.0, 0.5, 0.4]])
    soft = S.segment_scores(cosine, multi_label=False, logit_scale=np.log(10.0), multilabel_scale=1, multilabel_bias=0)
    expected = torch.softmax(torch.tensor(10.0 * cosine), dim=-1).numpy()
    np.testing.assert_allclose(soft, expected, rtol=1e-12)
    sig = S.segment_scores(cosine, multi_label=True, logit_scale=0.0, multilabel_scale=8.0, multilabel_bias=-2.0)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-(8.0 * cosine - 2.0))), rtol=1e-12)
    with pytest.raises(ValueError, match="cosine must be a 2-D matrix"):
        S.segment_scores(cosine[0], multi_label=False, logit_scale=0, multilabel_scale=1, multilabel_bias=0)


def test_aggregate_mean_and_vote():
    rows = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.4, 0.1]])
    scores, ranking = S.aggregate_segments(rows, "mean")
    np.testing.assert_allclose(scores[0], rows.mean(axis=0))
    np.testing.assert_array_equal(ranking, scores)
    # top-1 votes: labels 0, 1, 0; top-2 votes: {0, 1}, {1, 2}, {0, 1}
    np.testing.assert_allclose(S.aggregate_segments(rows, "vote")[0][0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(S.aggregate_segments(rows, "vote", vote_k=2)[0][0], [2 / 3, 1, 1 / 3])
    with pytest.raises(ValueError, match="aggregation must be one of"):
        S.aggregate_segments(rows, "max")


def test_vote_ties_broken_by_mean_then_index():
    # labels 0 and 1 get one vote each; label 1 has the higher mean, so it ranks first
    rows = np.array([[0.50, 0.45, 0.05], [0.10, 0.80, 0.10], [0.40, 0.20, 0.40]])
    fractions, ranking = S.aggregate_segments(rows[:2], "vote")
    np.testing.assert_allclose(fractions[0], [0.5, 0.5, 0.0])
    assert list(S.top_k_indices(ranking, 3)[0]) == [1, 0, 2]
    # equal votes and equal means: the lower label index first
    equal = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert list(S.top_k_indices(S.aggregate_segments(equal, "vote")[1], 2)[0]) == [0, 1]


def test_grouped_aggregation_equals_one_recording_at_a_time():
    rng = np.random.default_rng(0)
    rows, groups = rng.random((40, 6)), rng.integers(0, 7, 40)
    groups[:7] = np.arange(7)  # every recording has a segment
    for method in ("mean", "vote"):
        scores, ranking = S.aggregate_segments(rows, method, vote_k=2, groups=groups)
        for g in range(7):
            alone = S.aggregate_segments(rows[groups == g], method, vote_k=2)
            np.testing.assert_allclose(scores[g], alone[0][0])
            np.testing.assert_allclose(ranking[g], alone[1][0])
    with pytest.raises(ValueError, match="groups must number recordings 0..N-1 without gaps"):
        S.aggregate_segments(rows[:2], "mean", groups=[0, 2])


def test_score_recording_ranks_and_cuts_to_top_k():
    cosine = np.array([[0.1, 0.9, 0.3], [0.2, 0.8, 0.5]])
    calibration = {"logit_scale": np.log(20.0), "multilabel_scale": 10.0, "multilabel_bias": -5.0}
    ranked, per_segment = S.score_recording(cosine, ["a", "b", "c"], calibration=calibration, top_k=2)
    assert [r["label"] for r in ranked] == ["b", "c"]
    assert per_segment.shape == (2, 3)
    np.testing.assert_allclose(per_segment.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="cosine has 3 label columns but labels has 2 entries"):
        S.score_recording(cosine, ["a", "b"], calibration=calibration)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_pipeline_vote_and_protocol_song_vote_rank_every_song_the_same(top_k):
    """Random songs with many ties: the pipeline's ranking (score_recording, what users see) and the protocol's
    song-level vote (meralign.metrics.aggregate_songs, what the table reports) order labels identically."""
    rng = np.random.default_rng(top_k)
    calibration = {"logit_scale": 0.0, "multilabel_scale": 1.0, "multilabel_bias": 0.0}
    labels = [f"l{i}" for i in range(5)]
    cosines, song_ids = [], []
    for song in range(60):
        n = int(rng.integers(1, 6))
        cosines.append(np.round(rng.random((n, 5)), 1))  # coarse values: ties in votes and in means
        song_ids += [f"s{song}"] * n
    per_segment = np.concatenate(
        [
            S.segment_scores(
                c, multi_label=False, **{"logit_scale": 0.0, "multilabel_scale": 1.0, "multilabel_bias": 0.0}
            )
            for c in cosines
        ]
    )
    ids, song_scores = aggregate_songs(per_segment, song_ids, method="vote", top_k=top_k)
    protocol_order = S.top_k_indices(song_scores, 5)
    for song, cosine in enumerate(cosines):
        ranked, _ = S.score_recording(cosine, labels, calibration=calibration, aggregation="vote", top_k=top_k)
        pipeline_order = [labels.index(r["label"]) for r in ranked]
        assert pipeline_order == list(protocol_order[ids.index(f"s{song}")][:top_k])


def test_affect_readout_through_anchors():
    """Valence/arousal read through anchor labels: the softmax-weighted mean of the anchors' places on the axes;
    a sharp softmax on an audio vector equal to one anchor gives that anchor's place, a flat one the mean."""
    space = {
        "templates": ["{}"],
        "directions": np.eye(4)[:2].tolist(),
        "factors": [1.0, 1.0],
        "names": ["valence", "arousal"],
        "poles": {"valence": [-0.5, 0.5], "arousal": [-0.5, 0.5]},  # coordinate = 2 * projection
    }
    anchors = np.array([[0.4, 0.2, 0.8944, 0.0], [-0.3, 0.1, 0.0, 0.9487]])
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)  # unit, as label vectors are
    places = S.affect_coordinates(anchors, space)
    assert places["valence"] == pytest.approx([0.8, -0.6], abs=1e-4)
    assert places["arousal"] == pytest.approx([0.4, 0.2], abs=1e-4)
    sharp = S.affect_readout(anchors[:1], space, anchors, logit_scale=np.log(1e4))
    assert sharp["valence"][0] == pytest.approx(0.8, abs=1e-4) and sharp["arousal"][0] == pytest.approx(0.4, abs=1e-4)
    flat = S.affect_readout(anchors[:1], space, anchors, logit_scale=np.log(1e-6))
    assert flat["valence"][0] == pytest.approx(0.1, abs=1e-4)
    weights = S.segment_scores(
        anchors[:1] @ anchors.T,
        multi_label=False,
        logit_scale=1.0,
        multilabel_scale=0.0,
        multilabel_bias=0.0,
    )
    calibrated = S.audio_affect(anchors[:1], space, {"valence": [2.0, 0.1], "arousal": [1.0, 0.0]}, anchors, 1.0)
    assert calibrated["valence"][0] == pytest.approx(2.0 * (weights[0] @ places["valence"]) + 0.1)
    without = S.audio_affect(anchors[:1], space, {"valence": [2.0, 0.1], "arousal": [1.0, 0.0]})  # the projection
    assert without["valence"][0] == pytest.approx(2.0 * anchors[0, 0] + 0.1)
    with pytest.raises(ValueError, match="no valence and arousal axes"):
        S.affect_readout(anchors, {**space, "names": ["a", "b"]}, anchors)
