"""The scoring rules of MERAlign, in one place.

What a label list and a text template may be, how a label becomes text and then a label vector (the label
space), how cosines between audio and label vectors become scores, how the scores of a recording's segments
become the recording's scores, and where valence and arousal are read. The configuration, the model, the
pipeline, the vocabularies, the label alignment, training, the metrics and the music library all import these
rules from here, so they cannot disagree.

Part of the model's remote code: it imports only the standard library and numpy.
"""

from __future__ import annotations

import string

import numpy as np

AGGREGATIONS = ("mean", "vote")
TEXT_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers: longer label texts are cut


# ------------------------------------------------------------------------------------------- labels
def validate_labels(labels, argument: str = "candidate_labels", *, allow_string: bool = True) -> list[str]:
    """A label list: non-empty, strings only, no blank label, no label twice. Returns it as a list.

    With `allow_string`, a string is split on commas (the pipeline's "joyful, sad"); without it a string is
    refused, because where a vocabulary is expected a single string is almost always a mistake (one label, or
    a file name).
    """
    if isinstance(labels, str):
        if not allow_string:
            raise TypeError(f"{argument} must be a list of strings, got a single string {labels!r}")
        labels = [part.strip() for part in labels.split(",") if part.strip()]
    elif isinstance(labels, (list, tuple)):
        labels = list(labels)
    else:
        expected = "a list of strings or a comma-separated string" if allow_string else "a list of strings"
        raise TypeError(f"{argument} must be {expected}, got {type(labels).__name__}")
    if not labels:
        raise ValueError(f"{argument} is empty: give at least one label")
    seen = set()
    for label in labels:
        if not isinstance(label, str):
            raise TypeError(f"{argument} must contain only strings, got {label!r} ({type(label).__name__})")
        if not label.strip():
            raise ValueError(f"{argument} contains an empty label")
        if label in seen:
            raise ValueError(f"{argument} contains the label {label!r} more than once")
        seen.add(label)
    return labels


# ----------------------------------------------------------------------------------------- templates
def check_template(template, argument: str = "hypothesis_template") -> str:
    """A text template with exactly one bare `{}` (or `{0}`) slot for the label.

    So `template.format(label)` cannot fail (`{}{}`, `{x}`, a lone `{`), alter the label (`{!r}`, `{:>9}`) or
    silently drop it (`{{}}`). Literal braces are written `{{` and `}}`.
    """
    message = (
        f"{argument} must be a string containing '{{}}' exactly once, as the slot for the label "
        f"(write literal braces as '{{{{' and '}}}}'), got {template!r}"
    )
    if not isinstance(template, str):
        raise ValueError(message)
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:  # an unmatched brace
        raise ValueError(message) from None
    if fields not in ([("", "", None)], [("0", "", None)]):
        raise ValueError(message)
    return template


def apply_template(template: str, labels) -> list[str]:
    """The texts the text tower embeds for `labels` under `template` (checked first)."""
    check_template(template)
    return [template.format(label) for label in labels]


# ------------------------------------------------------------------------------------- the label space
# A label's vector: each of the label space's templates turns the label into a text; the text tower embeds each
# text (sentence-transformers' L2-normalised mean pooling, e); the label-space matrix M rescales a few
# directions of it, u = normalize(M e); the label vector is normalize(mean of u over the templates).
# M = I + sum_i (s_i - 1) d_i d_i' for orthonormal directions d_i and factors s_i: s > 1 stretches a direction so
# it counts more in the cosine (the affect axes of the "affect" space), s = 0 removes it (the direction all emotion
# words share), s = 1 leaves the cosine as it is (the default space, whose axes only serve valence and arousal).
# docs/label-space.md says how the directions were built and chosen. No label space (None): the paper's bare
# sentence embedding of the label under one template.
LABEL_SPACE_KEYS = ("templates", "directions", "factors", "names")


def check_label_space(label_space, dim: int, argument: str = "label_space") -> dict | None:
    """A label space (see above) as a plain dict, or None; anything inconsistent raises naming the field."""
    if label_space is None:
        return None
    if not isinstance(label_space, dict) or any(key not in label_space for key in LABEL_SPACE_KEYS):
        raise ValueError(f"{argument} must be None or a dict with the keys {LABEL_SPACE_KEYS}, got {label_space!r}")
    templates = label_space["templates"]
    if not isinstance(templates, (list, tuple)) or not templates:
        raise ValueError(f"{argument}['templates'] must be a non-empty list of templates, got {templates!r}")
    for template in templates:
        check_template(template, f"{argument}['templates'] entry")
    directions = _directions(label_space, dim)
    factors = np.asarray(label_space["factors"], dtype=np.float64)
    names = list(label_space["names"])
    if directions.ndim != 2 or directions.shape[1] != dim:
        raise ValueError(
            f"{argument}['directions'] must be [n, {dim}] (the text tower's size {dim}), got shape {directions.shape}"
        )
    if factors.shape != (len(directions),) or len(names) != len(directions) or not np.isfinite(factors).all():
        raise ValueError(
            f"{argument} needs one finite factor and one name per direction, got {factors.shape[0]} "
            f"factors and {len(names)} names for {len(directions)} directions"
        )
    if (factors < 0).any() or not np.allclose(directions @ directions.T, np.eye(len(directions)), atol=1e-5):
        raise ValueError(f"{argument}: directions must be orthonormal and factors >= 0")
    return dict(label_space)


def label_space_matrix(label_space: dict | None, dim: int) -> np.ndarray:
    """M = I + sum_i (s_i - 1) d_i d_i' [dim, dim] (float32; symmetric): the identity without a label space."""
    matrix = np.eye(dim)
    if label_space is not None:
        directions = _directions(label_space, dim)
        factors = np.asarray(label_space["factors"], dtype=np.float64)
        matrix += directions.T @ ((factors - 1.0)[:, None] * directions)
    return matrix.astype(np.float32)


def _directions(label_space: dict, dim: int) -> np.ndarray:
    """The directions as [n, dim] float64 (a label space with templates only has none)."""
    directions = np.asarray(label_space["directions"], dtype=np.float64)
    return directions.reshape(0, dim) if directions.size == 0 else directions


def label_text(label: str, label_space: dict | None) -> str:
    """The word a label stands for: in a label space, "_" is a space (Emotify writes "joyful_activation"); the
    paper's configuration embeds the label exactly as written."""
    return label.replace("_", " ") if label_space is not None else label


def label_templates(label_space: dict | None, default: str) -> list[str]:
    """The templates a label is embedded under: the label space's, else the model's one template."""
    return list(label_space["templates"]) if label_space is not None else [default]


def combine_templates(text_vectors, n_templates: int) -> np.ndarray:
    """Label vectors [labels, dim] from per-text vectors [labels * n_templates, dim] (label-major): normalized
    mean over each label's templates (CLIP's prompt ensemble)."""
    vectors = np.asarray(text_vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) % n_templates:
        raise ValueError(f"text_vectors must be [labels * {n_templates}, dim], got shape {vectors.shape}")
    mean = vectors.reshape(-1, n_templates, vectors.shape[1]).mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


AFFECT_AXES = ("valence", "arousal")


def has_affect_axes(label_space: dict | None) -> bool:
    """Whether the label space carries the valence and arousal axes (directions and their pole scale)."""
    return label_space is not None and all(
        axis in label_space["names"] and axis in label_space.get("poles", {}) for axis in AFFECT_AXES
    )


def affect_axes(label_space: dict) -> np.ndarray:
    """The valence and arousal directions [dim, 2] (AFFECT_AXES order) of a label space that has them."""
    if not has_affect_axes(label_space):
        raise ValueError("the label space has no valence and arousal axes: this model was saved without them")
    names, directions = label_space["names"], label_space["directions"]
    return np.stack([np.asarray(directions[names.index(axis)], dtype=np.float64) for axis in AFFECT_AXES], axis=1)


def affect_scale(label_space: dict) -> tuple[np.ndarray, np.ndarray]:
    """The affine map from a vector to its valence and arousal: `vectors @ weight + bias`, weight [dim, 2] and
    bias [2] (AFFECT_AXES order). It is the projection on each axis (:func:`affect_axes`), rescaled so the label
    space's negative pole words sit at -1 and its positive ones at +1 (`label_space["poles"]`)."""
    axes = affect_axes(label_space)  # first: it refuses a space without axes or poles
    low, high = (np.array([label_space["poles"][axis][end] for axis in AFFECT_AXES]) for end in (0, 1))
    return axes * (2.0 / (high - low)), -(low + high) / (high - low)


def affect_coordinates(vectors, label_space: dict) -> dict[str, np.ndarray]:
    """Valence and arousal of label vectors [n, dim] on the pole-word scale (:func:`affect_scale`)."""
    weight, bias = affect_scale(label_space)
    coordinates = np.asarray(vectors, dtype=np.float64) @ weight + bias
    return {axis: coordinates[:, i] for i, axis in enumerate(AFFECT_AXES)}


def affect_readout(audio, label_space: dict, anchor_vectors=None, logit_scale: float = 0.0) -> dict[str, np.ndarray]:
    """The raw valence and arousal of audio embeddings [n, dim], before the calibration's linear map.

    With `anchor_vectors` [m, dim] (the training vocabularies' label vectors): the anchors' mean place on each
    axis, weighted by the model's softmax over them (scale exp(logit_scale)). The head is trained to sit near its
    labels, not to carry their share of each axis, so reading affect through the labels it was trained on follows
    documented affect more closely than the projection does (docs/label-space.md). Without anchors (models saved
    before they were recorded): the projection on the axis.
    """
    if anchor_vectors is None:
        projections = np.asarray(audio, dtype=np.float64) @ affect_axes(label_space)
        return {axis: projections[:, i] for i, axis in enumerate(AFFECT_AXES)}
    anchors = np.asarray(anchor_vectors, dtype=np.float64)
    anchors = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    audio = np.asarray(audio, dtype=np.float64)
    audio = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    # the same softmax as the single-label scores (segment_scores), over the anchors
    weights = segment_scores(
        audio @ anchors.T, multi_label=False, logit_scale=logit_scale, multilabel_scale=0.0, multilabel_bias=0.0
    )
    return {axis: weights @ place for axis, place in affect_coordinates(anchors, label_space).items()}


def audio_affect(
    audio, label_space: dict, calibration: dict, anchor_vectors=None, logit_scale: float = 0.0
) -> dict[str, np.ndarray]:
    """Valence and arousal of audio embeddings [n, dim] on the pole-word scale: the raw reading
    (:func:`affect_readout`) mapped by `calibration` (`{"valence": [scale, bias], "arousal": [scale, bias]}`,
    fitted on the training datasets' validation segments against their labels' coordinates)."""
    raw = affect_readout(audio, label_space, anchor_vectors, logit_scale)
    return {axis: calibration[axis][0] * values + calibration[axis][1] for axis, values in raw.items()}


# ------------------------------------------------------------------------------------------- scores
def top_k_indices(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Indices [N, top_k] of each row's highest scores, best first; equal scores go to the lower label index."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :top_k]


def segment_scores(
    cosine, *, multi_label: bool, logit_scale: float, multilabel_scale: float, multilabel_bias: float
) -> np.ndarray:
    """Per-segment label scores [S, L] (float64) from cosines between audio and label embeddings.

    Single-label: a softmax over the labels of `exp(logit_scale) * cosine` (CLIP's temperature, fitted on the
    training datasets' validation data). Multi-label: independent `sigmoid(multilabel_scale * cosine +
    multilabel_bias)`, a logistic calibration fitted on the same data.
    """
    cosine = np.asarray(cosine, dtype=np.float64)
    if cosine.ndim != 2:
        raise ValueError(f"cosine must be a 2-D matrix [segments, labels], got shape {cosine.shape}")
    if multi_label:
        return 1.0 / (1.0 + np.exp(-(multilabel_scale * cosine + multilabel_bias)))
    logits = np.exp(logit_scale) * cosine
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def aggregate_segments(scores, aggregation: str, vote_k: int = 1, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Scores of whole recordings from the scores of their segments.

    `scores` [S, L]; `groups` [S] says which recording (0..N-1) each segment belongs to (None: all of one
    recording). Returns `(scores [N, L], ranking [N, L])`:

    - "mean": a recording's score is the mean of its segments' scores.
    - "vote" (the paper's majority vote): each segment votes for its `vote_k` best labels (`top_k_indices`);
      a label's score is the fraction of the recording's segments that voted for it.

    `ranking` orders labels the one way this project ranks them: by score, equal scores by the mean segment
    score, then by the lower label index. For "vote" it is the vote fraction plus an offset below half a vote
    (so `top_k_indices(ranking, k)` is the majority-vote prediction with that tie-break); for "mean" it is the
    score itself.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or not scores.shape[0] or not scores.shape[1]:
        raise ValueError(f"scores must be a non-empty matrix [segments, labels], got shape {scores.shape}")
    groups = np.zeros(len(scores), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if groups.shape != (len(scores),) or (groups < 0).any():
        raise ValueError(f"groups must hold one recording index >= 0 per segment ({len(scores)}), got {groups.shape}")
    n_groups = int(groups.max()) + 1
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)[:, None]
    if (counts == 0).any():
        raise ValueError("groups must number recordings 0..N-1 without gaps")
    means = _group_sum(scores, groups, n_groups) / counts
    if aggregation == "mean":
        return means, means
    k = min(int(vote_k), scores.shape[1])
    if k < 1:
        raise ValueError(f"vote_k must be an int >= 1, got {vote_k!r}")
    votes = np.zeros(scores.shape, dtype=np.float64)
    np.put_along_axis(votes, top_k_indices(scores, k), 1.0, axis=1)
    fractions = _group_sum(votes, groups, n_groups) / counts
    return fractions, fractions + _tie_break_offsets(means) * (0.5 / counts)


def _group_sum(rows: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, rows.shape[1]), dtype=np.float64)
    np.add.at(sums, groups, rows)
    return sums


def _tie_break_offsets(means: np.ndarray) -> np.ndarray:
    """Per row, (L-1-rank)/L in [0, 1) with rank 0 for the highest mean (equal means: lower index first)."""
    n_labels = means.shape[1]
    order = top_k_indices(means, n_labels)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_labels), order.shape).copy(), axis=1)
    return (n_labels - 1 - rank) / n_labels


def score_recording(
    cosine,
    labels: list[str],
    *,
    calibration: dict,
    multi_label: bool = False,
    aggregation: str = "mean",
    top_k: int | None = None,
) -> tuple[list[dict], np.ndarray]:
    """One recording's ranked `[{"label", "score"}]` (its `top_k` best, all when None) and its per-segment scores.

    `cosine` [segments, labels] are the cosines between the recording's segment embeddings and the label
    embeddings; `calibration` holds the model's `logit_scale`, `multilabel_scale` and `multilabel_bias`. With
    "vote", each segment votes for its `top_k` best labels (1 when None).
    """
    per_segment = segment_scores(
        cosine,
        multi_label=multi_label,
        logit_scale=float(calibration["logit_scale"]),
        multilabel_scale=float(calibration["multilabel_scale"]),
        multilabel_bias=float(calibration["multilabel_bias"]),
    )
    if per_segment.shape[1] != len(labels):
        raise ValueError(f"cosine has {per_segment.shape[1]} label columns but labels has {len(labels)} entries")
    scores, ranking = aggregate_segments(per_segment, aggregation, vote_k=top_k or 1)
    order = top_k_indices(ranking, top_k or len(labels))[0]
    return [{"label": labels[i], "score": float(scores[0, i])} for i in order], per_segment
