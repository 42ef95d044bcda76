"""Export of a Hub-ready model folder (model card and push are added alongside)."""

from __future__ import annotations

from pathlib import Path

from modeling_meralign import MERAlignModel, build_processors


def save_model_folder(model: MERAlignModel, output_dir, text_name_or_path: str | None = None) -> Path:
    """Write a self-contained model folder: safetensors weights, the remote code (model, configuration,
    pipeline, audio input), the feature extractor, the tokenizer and the `custom_pipelines` entry, so
    `pipeline("zero-shot-music-emotion", model=folder, trust_remote_code=True)` works from a fresh process."""
    from transformers import pipeline

    import pipeline_meralign  # registers the task

    text_path = text_name_or_path or getattr(model.config, "text_name_or_path", None)
    if text_path is None:
        from meralign.tiny import default_text_model_path

        text_path = default_text_model_path()
    feature_extractor, tokenizer = build_processors(model.config, text_path)
    pipe = pipeline(pipeline_meralign.TASK, model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)
    output_dir = Path(output_dir)
    pipe.save_pretrained(output_dir, safe_serialization=True)
    return output_dir
