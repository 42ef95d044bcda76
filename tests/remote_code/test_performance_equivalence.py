"""Optimised audio paths against the reference path they replace, with the tolerances they promise.

- early exit (the tower stops after the deepest feature layer) vs transformers' HubertModel over every
  layer, then layer selection and pooling: bitwise equal;
- the conv front end in slices of the batch (CPU default for long segments) vs all at once: within 1e-6;
- batched vs unbatched segments, model and pipeline (float32): within 1e-5;
- the rewritten front-end layers (windowed Linear conv, folded GroupNorm) vs the stock layers, in float: 1e-5;
- int8 (`quantize_for_cpu`) vs float32: embedding cosine >= 0.99 on real-shaped synthetic music, for a tiny
  and a mid-size tower.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cpu_meralign import FoldedGroupNormConv, WindowedLinearConv1d
from meralign.data.synthetic.render import render_clip
from meralign.testing import build_tiny_model, tiny_audio_config
from meralign.vocabularies import EMOTIONS
from modeling_meralign import MERAlignModel, pool_frames

SR = 24_000
MID_AUDIO = dict(
    hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536, conv_dim=(256,) * 7
)


@pytest.fixture(scope="module")
def tiny() -> MERAlignModel:
    return build_tiny_model(seed=1, feature_layers=[1, 2])  # deepest used layer 2 of 4: early exit skips two


@pytest.fixture(scope="module")
def mid() -> MERAlignModel:
    return build_tiny_model(seed=1, audio_config=tiny_audio_config(**MID_AUDIO), feature_layers=[2, 4])


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Four 4 s clips of synthetic music (melody, chords, percussion) with different emotions."""
    return torch.stack(
        [torch.from_numpy(render_clip([e], seed=i, seconds=4.0, sampling_rate=SR)) for i, e in enumerate(EMOTIONS[:4])]
    )


def masked_batch(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips with the last one cut to 2.5 s and zero-padded, as the pipeline pads a file's last segment."""
    values = clips.clone()
    mask = torch.ones(values.shape, dtype=torch.long)
    values[-1, int(2.5 * SR) :] = 0.0
    mask[-1, int(2.5 * SR) :] = 0
    return values, mask


# ------------------------------------------------------------------------------- early exit: exact
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
def test_early_exit_equals_full_tower_then_selection(tiny, clips, masked):
    values, mask = masked_batch(clips) if masked else (clips, None)
    ran = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
        for i, layer in enumerate(tiny.audio_model.encoder.layers)
    ]
    tiny.audio_front_end_batch = len(values)  # the same batching as the reference, so equality is bitwise
    try:
        with torch.inference_mode():
            pooled = tiny.pooled_audio_layers(values, mask)
    finally:
        tiny.audio_front_end_batch = "auto"
        for hook in hooks:
            hook.remove()
    assert ran == [0, 1], "layers 3 and 4 must not run for a head that uses layers 1 and 2"
    with torch.inference_mode():
        full = tiny.audio_model(values, attention_mask=mask, output_hidden_states=True).hidden_states
        frame_mask = (
            None
            if mask is None
            else tiny.audio_model._get_feature_vector_attention_mask(full[0].shape[1], mask).bool()
        )
        reference = torch.stack([pool_frames(full[i], frame_mask, "mean") for i in tiny.config.feature_layers], dim=1)
    assert len(full) == 5
    assert torch.equal(pooled, reference)


# ------------------------------------------------------------------ batching: per segment vs together
def test_sliced_front_end_matches_whole_batch(tiny, clips, monkeypatch):
    import modeling_meralign

    calls = []
    hook = tiny.audio_model.feature_extractor.register_forward_hook(
        lambda module, args, out: calls.append(len(args[0]))
    )
    try:
        with torch.inference_mode():
            whole = tiny.audio_model.feature_extractor(clips).transpose(1, 2)
            tiny.audio_front_end_batch = 1
            one = tiny._audio_front_end(clips)
            tiny.audio_front_end_batch = 3  # uneven slices: 3 + 1
            three = tiny._audio_front_end(clips)
            tiny.audio_front_end_batch = "auto"
            auto_whole = tiny._audio_front_end(clips)  # 4 x 96,000 samples fit the CPU budget: one call
            monkeypatch.setattr(modeling_meralign, "FRONT_END_AUTO_SAMPLES", 2 * clips.shape[1])
            auto_pairs = tiny._audio_front_end(clips)
    finally:
        hook.remove()
        tiny.audio_front_end_batch = "auto"
    assert calls == [4, 1, 1, 1, 1, 3, 1, 4, 2, 2]
    for name, got in (("one", one), ("three", three), ("auto", auto_whole), ("auto pairs", auto_pairs)):
        assert got.shape == whole.shape
        torch.testing.assert_close(got, whole, rtol=1e-6, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_batched_segments_match_unbatched(tiny, clips):
    values, mask = masked_batch(clips)
    with torch.inference_mode():
        batched = tiny.get_audio_features(values, mask)
        alone = torch.cat([tiny.get_audio_features(values[i : i + 1], mask[i : i + 1]) for i in range(len(values))])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_pipeline_batch_size_does_not_change_scores(tiny):
    from transformers import pipeline

    import pipeline_meralign
    from modeling_meralign import build_processors

    feature_extractor, tokenizer = build_processors(tiny.config, tiny.config.text_name_or_path)
    clip = render_clip(["sad", "tender"], seed=5, seconds=9.0, sampling_rate=SR)  # 4 segments of 2 s + a partial one
    labels = ["joyful", "sad", "tense", "calm"]
    results = {}
    for batch_size in (1, 3, 8):
        pipe = pipeline(
            pipeline_meralign.TASK,
            model=tiny,
            tokenizer=tokenizer,
            feature_extractor=feature_extractor,
            batch_size=batch_size,
        )
        out = pipe(clip, candidate_labels=labels, segment_seconds=2.0, return_segments=True)
        results[batch_size] = np.array([[seg["scores"][label] for label in labels] for seg in out["segments"]])
    assert results[1].shape == (5, len(labels))
    for batch_size in (3, 8):
        np.testing.assert_allclose(results[batch_size], results[1], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- rewritten front-end layers, in float
def test_windowed_linear_conv_equals_conv1d():
    torch.manual_seed(0)
    for kernel, stride, bias in ((3, 2, False), (2, 2, True), (10, 5, False)):
        conv = nn.Conv1d(6, 5, kernel, stride, bias=bias)
        windowed = WindowedLinearConv1d(conv)
        base = torch.randn(4, 6, 101)
        part = base[2:]  # a view with a storage offset, like a slice of a batch
        for x in (base, part, torch.randn(3, 101, 6).transpose(1, 2)):  # contiguous, offset, time-major
            with torch.no_grad():
                torch.testing.assert_close(windowed(x), conv(x), rtol=1e-5, atol=1e-5)


def test_folded_group_norm_conv_equals_stock_first_layer(clips):
    model = build_tiny_model(seed=3)
    layer = model.audio_model.feature_extractor.conv_layers[0]
    with torch.no_grad():
        layer.layer_norm.weight.uniform_(0.5, 1.5)  # a non-trivial affine part, as in trained weights
        layer.layer_norm.bias.uniform_(-0.2, 0.2)
        folded = FoldedGroupNormConv(layer)
        exact = copy.deepcopy(layer).double()  # the reference in float64: float32 GroupNorm itself loses digits
        batch = torch.cat([clips, 0.01 * clips[:1] + 0.3])  # also a quiet clip on a DC offset (hard for the norm)
        for x in (batch, batch[1:]):
            expected = exact(x[:, None].double()).float()
            torch.testing.assert_close(folded(x[:, None]), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(layer(x[:, None]), expected, rtol=1e-3, atol=1e-4)  # stock float32, for scale


# ----------------------------------------------------------------------------------- int8 vs float32
@pytest.mark.parametrize("which", ["tiny", "mid"])
def test_int8_embeddings_stay_close_to_float32(which, tiny, mid, clips):
    model = {"tiny": tiny, "mid": mid}[which]
    quantized = copy.deepcopy(model).quantize_for_cpu()
    assert quantized.is_quantized_for_cpu and not model.is_quantized_for_cpu
    assert isinstance(quantized.audio_model.feature_extractor.conv_layers[0], FoldedGroupNormConv)
    values, mask = masked_batch(clips)
    with torch.inference_mode():
        reference = model.get_audio_features(values, mask)
        got = quantized.get_audio_features(values, mask)
        tokens = {"input_ids": torch.tensor([[101, 7592, 102]])}
        text_ref, text_q = model.get_text_features(**tokens), quantized.get_text_features(**tokens)
    cosine = torch.nn.functional.cosine_similarity(reference, got, dim=-1)
    assert cosine.min() >= 0.99, cosine
    assert not torch.equal(reference, got), "int8 must actually change the computation"
    assert torch.equal(text_ref, text_q), "the text tower (and cached label embeddings) must not change"


def test_int8_replaces_linears_and_keeps_the_float_model_untouched(tiny):
    quantized = copy.deepcopy(tiny).quantize_for_cpu(front_end_layers=2)
    linears = [m for m in quantized.audio_model.modules() if type(m) is nn.Linear]
    assert linears == [], "every float Linear of the audio tower must be quantised"
    convs = quantized.audio_model.feature_extractor.conv_layers
    assert [isinstance(layer.conv, WindowedLinearConv1d) for layer in convs[1:]] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert quantized.quantize_for_cpu() is quantized  # a second call changes nothing
    assert any(type(m) is nn.Linear for m in tiny.audio_model.modules())
    linears_only = copy.deepcopy(tiny).quantize_for_cpu(front_end_layers=0)
    assert type(linears_only.audio_model.feature_extractor.conv_layers[0]).__name__ == "HubertGroupNormConvLayer"


# ------------------------------------------------------------------------------------------ bad input
def test_performance_options_refuse_bad_input(tiny, tmp_path):
    for bad in (0, -1, 1.5, True, "whole"):
        with pytest.raises(ValueError, match="audio_front_end_batch"):
            tiny.audio_front_end_batch = bad
    assert tiny.audio_front_end_batch == "auto"
    for bad in (-1, 7, 1.0, True):
        with pytest.raises(ValueError, match="front_end_layers"):
            copy.deepcopy(tiny).quantize_for_cpu(front_end_layers=bad)
    half = copy.deepcopy(tiny).to(torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        half.quantize_for_cpu()
    quantized = copy.deepcopy(tiny).quantize_for_cpu()
    with pytest.raises(ValueError, match="quantize_for_cpu"):
        quantized.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="padding"):
        WindowedLinearConv1d(nn.Conv1d(2, 2, 3, padding=1))
    with pytest.raises(TypeError, match="conv"):
        WindowedLinearConv1d(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="layer"):
        FoldedGroupNormConv(tiny.audio_model.feature_extractor.conv_layers[1])
