"""Checking predicted valence and arousal against the documented affect of what the tracks express.

A track's predicted valence (arousal) is the mean over its segments of the head's audio embedding read as the
model reads it (scoring_meralign.audio_affect: through its anchor labels, then calibrated); it is compared with
the documented value of the track's main label by Spearman correlation over tracks, with a 95% bootstrap interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from meralign.alignment.label_space import label_vectors
from meralign.features.datasets import DatasetArrays
from meralign.metrics.bootstrap import LEVEL, N_RESAMPLES, interval
from meralign.training.calibration import projected
from scoring_meralign import AFFECT_AXES, audio_affect


def affect_agreement(
    head,
    fields: dict,
    data: DatasetArrays,
    documented: dict[str, tuple[float, float]],
    split: str = "all",
    seed: int = 0,
) -> dict:
    """Per axis: Spearman between predicted and documented affect over tracks, its interval, and the track count.

    `documented` maps a label of `data`'s vocabulary to its (valence, arousal); a track is scored against its
    first (main) label. `fields`: the head's saved fields (its `label_space` and `affect_calibration`)."""
    if fields.get("label_space") is None or fields.get("affect_calibration") is None:
        raise ValueError("affect needs a head trained into a label space with affect axes (and its calibration)")
    rows = data.rows(split)
    calibration, space = fields["affect_calibration"], fields["label_space"]
    anchors = calibration.get("anchors")
    vectors = label_vectors(anchors, space, template=fields["hypothesis_template"]) if anchors else None
    affect = audio_affect(projected(head, data.features[rows]), space, calibration, vectors, fields["logit_scale"])
    tracks = list(dict.fromkeys(data.track_ids[i] for i in rows))
    position = {track: i for i, track in enumerate(tracks)}
    groups = np.array([position[data.track_ids[i]] for i in rows])
    counts = np.bincount(groups)
    labels = data.vocabulary.labels
    first = {data.track_ids[i]: labels[int(np.flatnonzero(data.labels[i].numpy())[0])] for i in rows}
    result = {}
    for a, axis in enumerate(AFFECT_AXES):
        predicted = np.bincount(groups, weights=affect[axis]) / counts
        truth = np.array([documented[first[track]][a] for track in tracks])
        result[axis] = {
            "spearman": float(spearmanr(predicted, truth)[0]),
            "interval": _interval(predicted, truth, seed),
            "n_tracks": len(tracks),
        }
    return result


def _interval(predicted: np.ndarray, truth: np.ndarray, seed: int) -> list[float]:
    """95% bootstrap interval of the Spearman correlation, resampling tracks."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(truth), size=(N_RESAMPLES, len(truth)))
    samples = np.array([spearmanr(predicted[d], truth[d])[0] for d in draws])
    return interval(samples, LEVEL)
