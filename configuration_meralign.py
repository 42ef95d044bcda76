"""Configuration of MERAlign: a MERT-shaped audio tower, a projection head and a sentence-transformer text tower.

This file is part of the model's remote code: it imports only transformers, the standard library and the
sibling scoring rules, so a Hub user needs nothing but transformers to load it.
"""

from __future__ import annotations

import math

from transformers import BertConfig, HubertConfig, PretrainedConfig

try:
    from .scoring_meralign import AGGREGATIONS, check_label_space, check_template
except ImportError:  # imported as a top-level module (local use, tests)
    from scoring_meralign import AGGREGATIONS, check_label_space, check_template

POOLINGS = ("mean", "first")
HEAD_TYPES = ("mlp", "attention", "linear")
# The config fields that size the projection head (MERAlignHead takes them as keyword arguments).
HEAD_ARGUMENTS = ("head_type", "head_hidden_size", "head_num_layers", "head_num_heads", "head_dropout")


def _as_float(name: str, value) -> float:
    """float(value), with an error that names the field (float('x') alone would not)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class MERAlignConfig(PretrainedConfig):
    r"""Configuration of [`MERAlignModel`].

    Args:
        audio_config (`dict` or `HubertConfig`): the audio tower. MERT-v1 checkpoints are HuBERT-shaped
            and load into transformers' native `HubertModel` (MERT's own remote code breaks on transformers 5).
        text_config (`dict` or `BertConfig`): the text tower; mean pooling + L2 norm over a `BertModel`
            reproduces the sentence-transformer all-MiniLM-L6-v2.
        feature_layers (`list[int]`): indices into the tower's hidden states (0 = the input of the first
            transformer layer, `num_hidden_layers` = the last layer). The paper uses 3, 6, 9, 12 of MERT-95M.
        pooling (`str`): how a segment's frames are pooled per layer: `"mean"` over time (default: it keeps
            the whole segment) or `"first"` (frame 0, the paper's choice, kept to reproduce it).
        head_type (`str`): `"mlp"`, `"linear"` (one linear map: the ridge-regression baseline) or `"attention"`
            (a small transformer over the selected layers as tokens,
            the paper's head family).
        head_hidden_size, head_num_layers, head_num_heads, head_dropout: sizes of the head.
        projection_size (`int`): the joint space; must equal the text tower's hidden size (384 for MiniLM).
        logit_scale_init_value (`float`): log of the initial temperature scale, as in CLIP.
        multilabel_scale, multilabel_bias (`float`): calibration for independent per-label scores,
            `sigmoid(multilabel_scale * cosine + multilabel_bias)`; fitted on training-dataset validation data.
        hypothesis_template (`str`): how a label is turned into text before embedding when the model has no
            label space; `"{}"` is the bare label (the paper's configuration).
        label_space (`dict`, *optional*): the saved transform that turns a label into the vector scoring uses
            (scoring_meralign.py): `templates` (a prompt ensemble), orthonormal `directions` of the text space
            with their `factors` and `names` (the valence and arousal axes; a factor above 1 stretches a direction,
            0 removes it, 1 keeps the cosine unchanged), the pole-word `poles` of the affect scale, and the
            `recipe` it was built from. None: bare sentence embeddings of the label.
        affect_calibration (`dict`, *optional*): how an audio embedding becomes valence and arousal
            (scoring_meralign.audio_affect): `anchors`, the training vocabularies' labels, whose places on the axes
            are averaged under the model's softmax over them (without anchors: the projection on each axis), then
            `{"valence": [scale, bias], "arousal": [scale, bias]}` onto the pole-word scale; fitted on
            training-dataset validation data. `pipeline(..., return_affect=True)` needs it.
        sampling_rate (`int`): the audio tower's rate (MERT: 24 kHz).
        segment_seconds (`float`): audio is scored in non-overlapping segments of this length.
    """

    model_type = "meralign"
    sub_configs = {"audio_config": HubertConfig, "text_config": BertConfig}

    def __init__(
        self,
        audio_config=None,
        text_config=None,
        feature_layers=(3, 6, 9, 12),
        pooling="mean",
        head_type="mlp",
        head_hidden_size=768,
        head_num_layers=2,
        head_num_heads=8,
        head_dropout=0.1,
        projection_size=None,
        logit_scale_init_value=math.log(1 / 0.07),
        multilabel_scale=10.0,
        multilabel_bias=-5.0,
        hypothesis_template="{}",
        sampling_rate=24000,
        segment_seconds=10.0,
        default_aggregation="mean",
        label_space=None,
        affect_calibration=None,
        **kwargs,
    ):
        if isinstance(audio_config, dict):
            audio_config = HubertConfig(**audio_config)
        if isinstance(text_config, dict):
            text_config = BertConfig(**text_config)
        self.audio_config = audio_config if audio_config is not None else HubertConfig()
        self.text_config = text_config if text_config is not None else BertConfig()
        self.feature_layers = list(feature_layers)
        self.pooling = pooling
        self.head_type = head_type
        self.head_hidden_size = head_hidden_size
        self.head_num_layers = head_num_layers
        self.head_num_heads = head_num_heads
        self.head_dropout = head_dropout
        self.projection_size = projection_size if projection_size is not None else self.text_config.hidden_size
        self.logit_scale_init_value = logit_scale_init_value
        self.multilabel_scale = _as_float("multilabel_scale", multilabel_scale)
        self.multilabel_bias = _as_float("multilabel_bias", multilabel_bias)
        self.hypothesis_template = hypothesis_template
        self.sampling_rate = sampling_rate
        self.segment_seconds = _as_float("segment_seconds", segment_seconds)
        self.default_aggregation = default_aggregation
        self.label_space = label_space
        self.affect_calibration = affect_calibration
        super().__init__(**kwargs)
        self.validate_fields()

    @property
    def max_feature_layer(self) -> int:
        """The deepest hidden state used: the tower need not run past it."""
        return max(self.feature_layers)

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sampling_rate))

    def validate_fields(self) -> None:
        """Raise a ValueError naming the field for any inconsistent setting."""
        depth = self.audio_config.num_hidden_layers
        if not self.feature_layers:
            raise ValueError("feature_layers is empty: give at least one hidden-state index")
        for layer in self.feature_layers:
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= depth:
                raise ValueError(
                    f"feature_layers entry {layer!r} is out of range: the audio tower has {depth} layers, "
                    f"so hidden-state indices run from 0 to {depth}"
                )
        if len(set(self.feature_layers)) != len(self.feature_layers):
            raise ValueError(f"feature_layers has duplicates: {self.feature_layers}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.default_aggregation not in AGGREGATIONS:
            raise ValueError(f"default_aggregation must be one of {AGGREGATIONS}, got {self.default_aggregation!r}")
        for name in ("head_hidden_size", "head_num_layers", "head_num_heads", "projection_size", "sampling_rate"):
            _check_positive_int(name, getattr(self, name))
        if self.head_type == "attention" and self.head_hidden_size % self.head_num_heads:
            raise ValueError(
                f"head_hidden_size ({self.head_hidden_size}) must be divisible by head_num_heads "
                f"({self.head_num_heads})"
            )
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if self.projection_size != self.text_config.hidden_size:
            raise ValueError(
                f"projection_size ({self.projection_size}) must equal the text tower's hidden_size "
                f"({self.text_config.hidden_size}): audio is projected into the text embedding space"
            )
        if not (
            isinstance(self.segment_seconds, float)
            and math.isfinite(self.segment_seconds)
            and self.segment_seconds > 0
        ):
            raise ValueError(f"segment_seconds must be a positive number, got {self.segment_seconds!r}")
        check_template(self.hypothesis_template)
        self.label_space = check_label_space(self.label_space, self.text_config.hidden_size)
        if self.affect_calibration is not None:
            calibration = self.affect_calibration
            maps = {k: v for k, v in calibration.items() if k != "anchors"} if isinstance(calibration, dict) else None
            if (
                maps is None
                or sorted(maps) != ["arousal", "valence"]
                or any(
                    not isinstance(pair, (list, tuple))
                    or len(pair) != 2
                    or not all(isinstance(x, (int, float)) for x in pair)
                    for pair in maps.values()
                )
            ):
                raise ValueError(
                    f"affect_calibration must be {{'valence': [scale, bias], 'arousal': [scale, bias]}} with optional "
                    f"'anchors', got {calibration!r}"
                )
            anchors = calibration.get("anchors")
            if anchors is not None and (
                not isinstance(anchors, list)
                or not anchors
                or not all(isinstance(a, str) and a.strip() for a in anchors)
            ):
                raise ValueError(
                    f"affect_calibration['anchors'] must be a non-empty list of label words, got {anchors!r}"
                )
            if self.label_space is None:
                raise ValueError("affect_calibration needs a label_space with valence and arousal axes")
