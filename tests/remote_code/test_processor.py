"""MERAlignProcessor: the feature extractor and tokenizer in one object, shipped and AutoProcessor-loadable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from meralign.data.synthetic.render import render_clip
from modeling_meralign import build_processors
from processing_meralign import MERAlignProcessor

SR = 24000
LABELS = ["joyful", "sad", "tense"]


@pytest.fixture(scope="module")
def processor(tiny_model):
    return MERAlignProcessor(*build_processors(tiny_model.config, tiny_model.config.text_name_or_path))


def test_processor_output_runs_the_model_and_matches_the_towers(tiny_model, processor):
    clips = [
        render_clip(["sad"], seed=1, seconds=2.0, sampling_rate=SR),
        render_clip(["joyful"], seed=2, seconds=1.5, sampling_rate=SR),
    ]
    batch = processor(
        text=LABELS, audio=clips, sampling_rate=SR, hypothesis_template="music that sounds {}", return_tensors="pt"
    )
    assert set(batch) >= {"input_ids", "attention_mask", "input_values", "audio_attention_mask"}
    assert batch["audio_attention_mask"][1].sum() == int(1.5 * SR)  # the shorter clip is padded and masked
    with torch.inference_mode():
        out = tiny_model(**batch)
        text = tiny_model.get_text_features(batch["input_ids"], batch["attention_mask"])
        audio = tiny_model.get_audio_features(batch["input_values"], batch["audio_attention_mask"])
    assert out.logits_per_audio.shape == (2, 3)
    torch.testing.assert_close(out.text_embeds, text)
    torch.testing.assert_close(out.audio_embeds, audio)
    tokens = processor.tokenizer(["music that sounds joyful"])["input_ids"][0]
    assert batch["input_ids"][0][: len(tokens)].tolist() == tokens  # the template was applied


def test_processor_refuses_bad_calls(processor):
    with pytest.raises(ValueError, match="give text"):
        processor()
    with pytest.raises(ValueError, match="hypothesis_template must be a string containing"):
        processor(text=LABELS, hypothesis_template="no slot")
    with pytest.raises(ValueError, match="text contains the label 'sad' more than once"):
        processor(text=["sad", "sad"])
    with pytest.raises(TypeError, match="unexpected argument"):
        processor(text=LABELS, padding_side="left")


def test_model_forward_refuses_unknown_arguments(tiny_model, processor):
    batch = processor(text=LABELS, audio=[np.zeros(SR, dtype=np.float32)], sampling_rate=SR, return_tensors="pt")
    batch["audio_mask"] = batch.pop("audio_attention_mask")  # a misspelling must not be silently ignored
    with pytest.raises(TypeError, match="audio_mask"):
        tiny_model(**batch)


def test_exported_folder_loads_with_auto_processor_in_a_fresh_process(tiny_model_dir, run_isolated):
    out = run_isolated(f"""
        import json
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True)
        batch = processor(text=["happy", "sad"], audio=[[0.0] * 4800], sampling_rate=24000)
        print(json.dumps({{"class": type(processor).__name__, "keys": sorted(batch)}}))
    """)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["class"] == "MERAlignProcessor"
    assert {"input_ids", "attention_mask", "input_values", "audio_attention_mask"} <= set(result["keys"])


def test_processors_of_a_model_folder_load_without_a_config_warning(tiny_model_dir, run_isolated):
    """The tokenizer comes from a folder whose config.json is MERAlign's: no "a model of type `meralign` to
    instantiate a model of type ``" warning and no remote-code prompt (a fresh process: transformers warns once)."""
    result = run_isolated(f"""
        import sys
        sys.path.insert(0, {str(tiny_model_dir)!r})
        from modeling_meralign import MERAlignConfig, build_processors
        config = MERAlignConfig.from_pretrained({str(tiny_model_dir)!r})
        _, tokenizer = build_processors(config, {str(tiny_model_dir)!r})
        print(tokenizer("joyful")["input_ids"][0] == tokenizer.cls_token_id)
    """)
    assert "model of type" not in result.stderr and "custom code" not in result.stderr, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
