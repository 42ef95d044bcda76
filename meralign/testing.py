"""Randomly initialised MERT-shaped towers for tests, the offline demo and benchmarks (tiny and full size).

MERT weights cannot be fetched offline, so everything that runs here builds a tower with MERT-v1's
shape (7-layer conv front end with MERT's kernels and strides, so 75 frames/s at 24 kHz; a grouped
positional convolution; post-norm transformer layers) at a fraction of its width and depth. Any
number measured with it says nothing about what real MERT weights would reach.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, HubertConfig

from configuration_meralign import MERAlignConfig
from meralign.towers import default_text_model_path
from modeling_meralign import MERAlignModel, load_text_tower

# MERT-v1-95M's front end: 7 convs, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2 (total stride 320).
MERT_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
MERT_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def mert_95m_audio_config(**overrides) -> HubertConfig:
    """MERT-v1-95M's architecture as a HubertConfig (random weights when instantiated)."""
    fields = dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        conv_kernel=MERT_CONV_KERNEL,
        conv_stride=MERT_CONV_STRIDE,
        conv_bias=False,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        feat_proj_layer_norm=True,
        layer_norm_eps=1e-5,
        mask_time_prob=0.05,
        layerdrop=0.05,
    )
    fields.update(overrides)
    return HubertConfig(**fields)


def tiny_audio_config(**overrides) -> HubertConfig:
    """A MERT-shaped tower a few MB in size: conv 7 x 64, hidden 64, 4 layers."""
    fields = dict(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(64,) * 7,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    fields.update(overrides)
    return mert_95m_audio_config(**fields)


def tiny_text_config(**overrides) -> BertConfig:
    """A tiny random BERT for unit tests that do not need real label semantics (hidden 384 like MiniLM)."""
    fields = dict(hidden_size=384, num_hidden_layers=1, num_attention_heads=4, intermediate_size=256, vocab_size=30522)
    fields.update(overrides)
    return BertConfig(**fields)


def build_tiny_model(
    text_name_or_path: str | None = None, *, seed: int = 0, audio_config: HubertConfig | None = None, **config_kwargs
) -> MERAlignModel:
    """A MERAlignModel with a random tiny MERT-shaped tower and a real sentence-transformer text tower.

    `text_name_or_path=None` uses the packaged all-MiniLM-L6-v2.
    """
    text_path = text_name_or_path or default_text_model_path()
    text = load_text_tower(text_path)
    audio_config = audio_config or tiny_audio_config()
    config_kwargs.setdefault("feature_layers", [1, 2, 3, 4][: audio_config.num_hidden_layers])
    config_kwargs.setdefault("head_hidden_size", 128)
    config = MERAlignConfig(audio_config=audio_config.to_dict(), text_config=text.config.to_dict(), **config_kwargs)
    torch.manual_seed(seed)
    model = MERAlignModel(config)
    model.text_model.load_state_dict(text.state_dict())
    model.config.text_name_or_path = text_path
    return model.eval()


def build_mert_95m_model(text_name_or_path: str | None = None, *, seed: int = 0, **config_kwargs) -> MERAlignModel:
    """A MERAlignModel with MERT-v1-95M's full architecture (random weights) and the paper's head layout.

    For benchmarks: speed and memory depend on the shapes, not on the weights. Layers 3, 6, 9, 12 and an
    MLP head of width 768 (the MERAlignConfig defaults) unless `config_kwargs` say otherwise.
    """
    config_kwargs.setdefault("feature_layers", [3, 6, 9, 12])
    config_kwargs.setdefault("head_hidden_size", 768)
    return build_tiny_model(text_name_or_path, seed=seed, audio_config=mert_95m_audio_config(), **config_kwargs)
