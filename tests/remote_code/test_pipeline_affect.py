"""`return_affect=True`: valence and arousal of a recording and of each segment, from the audio embedding's
projection on the label space's affect axes, mapped by the model's calibration."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import make_pipeline

from meralign.alignment.label_space import resolve_label_space
from modeling_meralign import build_processors

SR, SEG = 24000, 1.0
LABELS = ["happy", "sad", "tense"]
CALIBRATION = {"valence": [3.0, 0.25], "arousal": [-2.0, 0.5]}  # not the identity: the mapping must be applied


@pytest.fixture(scope="module")
def processors(tiny_model_1s):
    return build_processors(tiny_model_1s.config, tiny_model_1s.config.text_name_or_path)


@pytest.fixture(scope="module")
def affect_pipe(tiny_model_1s, processors):
    model = copy.copy(tiny_model_1s)  # shares every weight; only the config differs
    model.config = copy.deepcopy(tiny_model_1s.config)
    model.config.label_space = resolve_label_space("default")
    model.config.affect_calibration = CALIBRATION
    return make_pipeline(model, processors)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    t = np.arange(int(2.5 * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 1.5 * t))).astype(np.float32)


def test_valence_and_arousal_follow_the_axes_and_the_calibration(affect_pipe, clip):
    assert affect_pipe.has_affect
    result = affect_pipe(clip, candidate_labels=LABELS, return_affect=True, return_segments=True)
    embeds, times = affect_pipe.recording_embeddings(clip)
    space = affect_pipe.model.config.label_space
    assert [(s["start"], s["end"]) for s in result["segments"]] == [tuple(t) for t in times]
    for axis, (scale, bias) in CALIBRATION.items():
        direction = np.asarray(space["directions"][space["names"].index(axis)])
        expected = scale * (embeds.double().numpy() @ direction) + bias
        np.testing.assert_allclose([s[axis] for s in result["segments"]], expected, atol=1e-6)
        assert result[axis] == pytest.approx(expected.mean(), abs=1e-6)  # the recording: its segments' mean
    assert len(result["labels"]) == len(LABELS)  # the scores come as well


def test_a_model_with_anchors_reads_affect_through_them(affect_pipe, clip):
    """With anchor labels in the calibration, each segment's valence/arousal is the calibrated, softmax-weighted
    mean of the anchors' places on the axes (the anchors embedded as any label is)."""
    import scoring_meralign as S

    config = affect_pipe.model.config
    anchors = ["happy", "gloomy", "relaxed", "furious"]
    config.affect_calibration = {**CALIBRATION, "anchors": anchors}
    try:
        result = affect_pipe(clip, candidate_labels=LABELS, return_affect=True, return_segments=True)
    finally:
        config.affect_calibration = CALIBRATION
    embeds, _ = affect_pipe.recording_embeddings(clip)
    vectors = affect_pipe.label_embeddings(anchors).double().numpy()
    places = S.affect_coordinates(vectors, config.label_space)
    cosine = embeds.double().numpy() @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    weights = S.segment_scores(
        cosine,
        multi_label=False,
        multilabel_scale=0.0,
        multilabel_bias=0.0,
        **{"logit_scale": affect_pipe.calibration()["logit_scale"]},
    )
    for axis, (scale, bias) in CALIBRATION.items():
        expected = scale * (weights @ places[axis]) + bias
        np.testing.assert_allclose([s[axis] for s in result["segments"]], expected, atol=1e-6)
        projection = (
            scale
            * (
                embeds.double().numpy()
                @ np.asarray(config.label_space["directions"][config.label_space["names"].index(axis)])
            )
            + bias
        )
        assert not np.allclose(expected, projection)  # not the projection path


def test_without_segments_affect_comes_for_the_recording_only(affect_pipe, clip):
    result = affect_pipe(clip, candidate_labels=LABELS, return_affect=True)
    assert set(result) == {"labels", "scores", "valence", "arousal"}


def test_a_model_without_affect_axes_refuses_return_affect(tiny_model_1s, processors, clip):
    pipe = make_pipeline(tiny_model_1s, processors)
    assert not pipe.has_affect
    with pytest.raises(ValueError, match="return_affect needs a model saved with affect axes"):
        pipe(clip, candidate_labels=LABELS, return_affect=True)
    assert isinstance(pipe(clip, candidate_labels=LABELS, return_affect=False), list)  # off: the plain ranking
