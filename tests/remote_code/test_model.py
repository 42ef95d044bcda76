"""Acceptance tests of the core model: MERAlignConfig, MERAlignModel, the MERT builder, the tiny towers.

All offline and on CPU. Audio towers are tiny (conv 7 x 64, hidden 64, 4 layers); the text tower is the
real all-MiniLM-L6-v2 where label semantics matter and a one-layer random BERT where they do not.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoFeatureExtractor, AutoTokenizer, HubertModel

from configuration_meralign import MERAlignConfig
from meralign.publish.folder import save_model_folder
from meralign.testing import MERT_CONV_KERNEL, MERT_CONV_STRIDE, build_tiny_model, tiny_audio_config, tiny_text_config
from meralign.towers import default_text_model_path
from meralign.vocabularies import BUILTIN
from modeling_meralign import (
    MERAlignModel,
    load_mert_tower,
    mert_to_hubert_config,
    pool_frames,
)

SR = 24000
# Two clips of different length: the second is zero-padded in a batch and masked.
LENGTHS = (12000, 7500)
STABLE = dict(do_stable_layer_norm=True, feat_extract_norm="layer")
LABELS = ["joyful", "melancholic", "tense and dark", "serene"]

# config.json of m-a-p/MERT-v1-95M as published (the fields a MERT checkpoint folder carries).
MERT_V1_95M_CONFIG = {
    "activation_dropout": 0.0,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.1,
    "attention_relax": -1.0,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.05,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "sample_rate": 24000,
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
    "torch_dtype": "float32",
    "transformers_version": "4.24.0",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}
# The fields that make the tiny tower tiny.
TINY_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim")


# ------------------------------------------------------------------------------------------ helpers
def waveforms(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) * 0.1 for n in LENGTHS]


def padded_batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded [batch, samples] and its 0/1 sample mask, built by hand (not by the code under test)."""
    width = max(len(w) for w in waves)
    values = torch.zeros(len(waves), width)
    mask = torch.zeros(len(waves), width, dtype=torch.long)
    for i, w in enumerate(waves):
        values[i, : len(w)] = torch.from_numpy(w)
        mask[i, : len(w)] = 1
    return values, mask


def n_frames(n_samples: int) -> int:
    """Frames the MERT conv front end makes from n samples (Conv1d output length, no padding)."""
    for kernel, stride in zip(MERT_CONV_KERNEL, MERT_CONV_STRIDE):
        n_samples = (n_samples - kernel) // stride + 1
    return n_samples


def small_model(stable: bool = False, **config_kwargs) -> MERAlignModel:
    """A fast model for tests that need no label semantics: tiny audio tower, one-layer random text tower."""
    audio = tiny_audio_config(**(STABLE if stable else {}))
    config_kwargs.setdefault("feature_layers", [1, 2, 3, 4])
    config_kwargs.setdefault("head_hidden_size", 64)
    text = tiny_text_config(vocab_size=512)  # label semantics are not needed here, a small vocabulary is faster
    config = MERAlignConfig(audio_config=audio.to_dict(), text_config=text.to_dict(), **config_kwargs)
    torch.manual_seed(0)
    return MERAlignModel(config).eval()


@functools.cache
def shared_small_model(
    stable: bool, feature_layers: tuple[int, ...] = (1, 2, 3, 4), pooling: str = "mean"
) -> MERAlignModel:
    """small_model, built once per setting for the read-only tests (the machine's two cores are shared)."""
    return small_model(stable, feature_layers=list(feature_layers), pooling=pooling)


def hubert_reference_states(model: MERAlignModel, values, mask) -> tuple[list[torch.Tensor], torch.Tensor]:
    """HubertModel's own hidden states 0..N, the N-th being `last_hidden_state`.

    With stable layer norm, transformers 5 returns the last layer's output before the final LayerNorm as
    `hidden_states[-1]`; MERT (written for transformers 4) and `last_hidden_state` use the normed one,
    which is what feature layer N means for MERAlign.
    """
    out = model.audio_model(values, attention_mask=mask, output_hidden_states=True)
    return [*out.hidden_states[:-1], out.last_hidden_state], out


# ------------------------------------------------------------------------------- 1. round trip
@pytest.fixture(scope="module")
def attention_model():
    return build_tiny_model(head_type="attention", head_hidden_size=64, head_num_heads=4, seed=1)


@pytest.fixture(scope="module")
def attention_model_dir(attention_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attention_model")
    save_model_folder(attention_model, out)
    return out


def test_saved_folder_is_safetensors_with_remote_code(tiny_model_dir):
    files = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))], files
    assert {"configuration_meralign.py", "modeling_meralign.py"} <= files
    assert {"preprocessor_config.json", "tokenizer_config.json"} <= files
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["auto_map"]["AutoConfig"] == "configuration_meralign.MERAlignConfig"
    assert config["auto_map"]["AutoModel"] == "modeling_meralign.MERAlignModel"
    assert config["model_type"] == "meralign"


ROUND_TRIP_CHILD = """
import json, os, sys
import numpy as np
import torch

for name in ("meralign", "modeling_meralign", "configuration_meralign"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        continue
    raise AssertionError(f"{name} is importable: the test would not exercise the shipped remote code")

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoTokenizer

job = json.loads(os.environ["JOB"])
data = job["data"]
waves = [np.load(f"{data}/wave{i}.npy") for i in range(job["n_waves"])]
for tag, folder in job["models"].items():
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model, info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    assert type(config).__name__ == "MERAlignConfig", type(config)
    assert type(model).__name__ == "MERAlignModel", type(model)
    for obj in (config, model):
        assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__
    assert config.head_type == model.config.head_type == tag, (config.head_type, tag)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert not model.training
    audio = feature_extractor(waves, sampling_rate=24000, padding=True, return_tensors="pt")
    text = tokenizer(job["labels"], padding=True, return_tensors="pt")
    with torch.no_grad():
        audio_embeds = model.get_audio_features(audio["input_values"], audio["attention_mask"]).numpy()
        text_embeds = model.get_text_features(**text).numpy()
    for kind, got in (("audio", audio_embeds), ("text", text_embeds)):
        expected = np.load(f"{data}/{tag}_{kind}.npy")
        assert got.shape == expected.shape and np.array_equal(got, expected), (
            f"{tag} {kind} embeddings differ after reload: max abs diff {np.abs(got - expected).max()}"
        )
    print("OK", tag)

leaked = [m for m in ("meralign", "modeling_meralign", "configuration_meralign") if m in sys.modules]
assert not leaked, leaked
"""


def test_round_trip_in_fresh_process(
    tiny_model, tiny_model_dir, attention_model, attention_model_dir, run_isolated, tmp_path
):
    """A user with only transformers installed loads the saved folders and gets bit-identical embeddings."""
    data = tmp_path / "data"
    data.mkdir()
    waves = waveforms()
    for i, w in enumerate(waves):
        np.save(data / f"wave{i}.npy", w)
    models = {"mlp": (tiny_model, tiny_model_dir), "attention": (attention_model, attention_model_dir)}
    for tag, (model, folder) in models.items():
        feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        audio = feature_extractor(waves, sampling_rate=SR, padding=True, return_tensors="pt")
        assert audio["attention_mask"].sum(1).tolist() == list(LENGTHS)
        with torch.no_grad():
            np.save(
                data / f"{tag}_audio.npy",
                model.get_audio_features(audio["input_values"], audio["attention_mask"]).numpy(),
            )
            np.save(
                data / f"{tag}_text.npy",
                model.get_text_features(**tokenizer(LABELS, padding=True, return_tensors="pt")).numpy(),
            )
    home = tmp_path / "child"
    home.mkdir()
    job = {
        "data": str(data),
        "n_waves": len(waves),
        "labels": LABELS,
        "models": {tag: str(folder) for tag, (_, folder) in models.items()},
    }
    result = run_isolated(ROUND_TRIP_CHILD, env={"JOB": json.dumps(job)}, cwd=home, timeout=240)
    assert result.stdout.split() == ["OK", "mlp", "OK", "attention"], result.stdout


# --------------------------------------------------------------------- 2. text tower equivalence
def test_text_tower_reproduces_sentence_transformer(tiny_model, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    labels = [label for vocab in BUILTIN.values() for label in vocab.labels]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tokenizer(labels, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        ours = tiny_model.get_text_features(**batch)
    reference = SentenceTransformer(default_text_model_path(), device="cpu").encode(
        labels, normalize_embeddings=True, convert_to_tensor=True
    )
    cosine = F.cosine_similarity(ours, reference, dim=-1)
    worst = int(cosine.argmin())
    assert float(cosine.min()) >= 0.9999, f"label {labels[worst]!r}: cosine {float(cosine[worst]):.6f}"
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(labels)), atol=1e-5)


# ----------------------------------------------------------------------- 3. MERT compatibility
def mert_state_dict(tower: HubertModel) -> dict[str, torch.Tensor]:
    """The tower's weights under MERT's names: unprefixed, positional conv weight norm as weight_g/weight_v."""
    renames = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {}
    for key, value in tower.state_dict().items():
        for old, new in renames.items():
            key = key.replace(old, new)
        state[key] = value.detach().clone().contiguous()
    return state


def write_mert_checkpoint(folder: Path, state: dict[str, torch.Tensor], fmt: str = "bin", **config_overrides) -> Path:
    """A folder laid out like m-a-p/MERT-v1-95M (MERT's config.json + weights), tower shrunk to the tiny size."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny = tiny_audio_config().to_dict()
    config = {**MERT_V1_95M_CONFIG, **{k: tiny[k] for k in TINY_SIZE_FIELDS}, **config_overrides}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def mert_source():
    """A random tiny tower standing in for a MERT checkpoint, and its weights under MERT's names."""
    torch.manual_seed(7)
    tower = HubertModel(tiny_audio_config()).eval()
    state = mert_state_dict(tower)
    assert "feature_extractor.conv_layers.0.conv.weight" in state
    assert {"encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"} <= set(state)
    assert not any(k.startswith(("hubert.", "model.")) or "parametrizations" in k for k in state)
    return tower, state


def assert_same_hidden_states(a: HubertModel, b: HubertModel, values, mask=None) -> None:
    with torch.no_grad():
        out_a = a(values, attention_mask=mask, output_hidden_states=True)
        out_b = b(values, attention_mask=mask, output_hidden_states=True)
    assert len(out_a.hidden_states) == len(out_b.hidden_states) == a.config.num_hidden_layers + 1
    for i, (x, y) in enumerate(zip(out_a.hidden_states, out_b.hidden_states)):
        assert torch.equal(x, y), f"hidden state {i} differs"
    assert torch.equal(out_a.last_hidden_state, out_b.last_hidden_state)


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_mert_checkpoint_loads_into_hubert(mert_source, tmp_path, fmt):
    source, state = mert_source
    folder = write_mert_checkpoint(tmp_path / "mert", state, fmt)
    tower = load_mert_tower(folder).eval()
    assert isinstance(tower, HubertModel)
    values, mask = padded_batch(waveforms(1))
    assert_same_hidden_states(source, tower, values, mask)


def test_from_towers_assembles_mert_and_sentence_transformer(mert_source, tiny_model, tmp_path):
    source, state = mert_source
    folder = write_mert_checkpoint(tmp_path / "mert", state, "bin")
    text_path = default_text_model_path()
    model = MERAlignModel.from_towers(folder, text_path, feature_layers=[2, 4], pooling="first")
    assert not model.training, "from_towers must return an inference-ready model, as from_pretrained does"
    assert model.config.feature_layers == [2, 4] and model.config.pooling == "first"
    values, mask = padded_batch(waveforms(2))
    assert_same_hidden_states(source, model.audio_model, values, mask)
    # tiny_model's text tower was loaded from the same folder by load_text_tower
    reference = tiny_model.text_model.state_dict()
    ours = model.text_model.state_dict()
    assert set(ours) == set(reference)
    assert all(torch.equal(ours[k], v) for k, v in reference.items())
    with torch.no_grad():
        embeds = model.get_audio_features(values, mask)
    assert embeds.shape == (2, tiny_model.config.projection_size)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_mert_checkpoint_key_mismatch_is_refused(mert_source, tmp_path, change):
    _, state = mert_source
    state = dict(state)
    if change == "missing":
        key = "encoder.layers.1.attention.k_proj.weight"
        del state[key]
    else:
        key = "encoder.cqt_frontend.weight"
        state[key] = torch.zeros(3)
    folder = write_mert_checkpoint(tmp_path / "mert", state, "bin")
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_mert_tower(folder)


def test_mert_cqt_front_end_and_foreign_configs_are_refused(mert_source, tmp_path):
    _, state = mert_source
    folder = write_mert_checkpoint(tmp_path / "mert", state, "bin", feature_extractor_cqt=True)
    with pytest.raises(ValueError, match="feature_extractor_cqt"):
        load_mert_tower(folder)
    with pytest.raises(ValueError, match="model_type"):
        mert_to_hubert_config({**MERT_V1_95M_CONFIG, "model_type": "bert"})
    with pytest.raises(TypeError, match="mert_config"):
        mert_to_hubert_config("config.json")
    converted = mert_to_hubert_config(MERT_V1_95M_CONFIG)
    for field in ("hidden_size", "num_hidden_layers", "conv_bias", "feat_extract_norm", "do_stable_layer_norm"):
        assert getattr(converted, field) == MERT_V1_95M_CONFIG[field], field
    for field in ("conv_dim", "conv_kernel", "conv_stride"):
        assert list(getattr(converted, field)) == MERT_V1_95M_CONFIG[field], field


# -------------------------------------------------------------------- 4. hidden states and pooling
@pytest.mark.parametrize("stable", [False, True], ids=["post-norm", "stable-layer-norm"])
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
def test_audio_hidden_states_match_hubert(stable, masked):
    model = shared_small_model(stable)
    n_layers = model.config.audio_config.num_hidden_layers
    values, mask = padded_batch(waveforms(3))
    mask = mask if masked else None
    with torch.no_grad():
        reference, out = hubert_reference_states(model, values, mask)
        states, frame_mask = model.audio_hidden_states(values, mask, depth=n_layers)
    assert out.hidden_states is not None and len(out.hidden_states) == n_layers + 1
    assert len(states) == n_layers + 1
    for i, (ours, theirs) in enumerate(zip(states, reference)):
        assert torch.equal(ours, theirs), f"hidden state {i} differs"
    # Only the stable-layer-norm tower normalises its last output: there, index N is the normed state.
    assert torch.equal(states[-1], out.hidden_states[-1]) is (not stable)
    if masked:
        assert frame_mask.sum(1).tolist() == [n_frames(n) for n in LENGTHS]
    else:
        assert frame_mask is None


@pytest.mark.parametrize("stable", [False, True], ids=["post-norm", "stable-layer-norm"])
def test_audio_hidden_states_stop_at_the_deepest_feature_layer(stable):
    model = shared_small_model(stable, (0, 2))
    values, mask = padded_batch(waveforms(4))
    ran = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: ran.append(i))
        for i, layer in enumerate(model.audio_model.encoder.layers)
    ]
    try:
        with torch.no_grad():
            states, _ = model.audio_hidden_states(values, mask)
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == [0, 1], "layers past the deepest feature layer must not run"
    with torch.no_grad():
        full = model.audio_model(values, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(states) == 3
    for i in range(3):
        assert torch.equal(states[i], full[i]), f"hidden state {i} differs"


@pytest.mark.parametrize("stable", [False, True], ids=["post-norm", "stable-layer-norm"])
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
def test_pooled_layers_and_audio_features(stable, masked):
    layers = [4, 0, 2]  # unordered, and including N, which is the normed state for stable towers
    values, mask = padded_batch(waveforms(5))
    for pooling in ("mean", "first"):
        check_pooling(shared_small_model(stable, tuple(layers), pooling), values, mask if masked else None)


def check_pooling(model: MERAlignModel, values, mask) -> None:
    """pooled_audio_layers and get_audio_features against pooling computed by hand from HubertModel's states."""
    layers, pooling, masked = model.config.feature_layers, model.config.pooling, mask is not None
    with torch.no_grad():
        reference, _ = hubert_reference_states(model, values, mask)
        pooled = model.pooled_audio_layers(values, mask)
        embeds = model.get_audio_features(values, mask)
        head_out = model.audio_head(pooled)
    frames = [n_frames(n) for n in LENGTHS] if masked else [reference[0].shape[1]] * len(LENGTHS)
    expected = torch.stack(
        [
            torch.stack(
                [reference[i][b, : frames[b]].mean(0) if pooling == "mean" else reference[i][b, 0] for i in layers]
            )
            for b in range(len(LENGTHS))
        ]
    )
    assert pooled.shape == (len(LENGTHS), len(layers), model.config.audio_config.hidden_size)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(embeds, head_out)
    assert embeds.shape == (len(LENGTHS), model.config.projection_size)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(len(LENGTHS)))
    # the override argument picks the other pooling without touching the config
    other = "first" if pooling == "mean" else "mean"
    with torch.no_grad():
        overridden = model.pooled_audio_layers(values, mask, pooling=other)
    assert model.config.pooling == pooling and not torch.allclose(overridden, pooled)


def test_bad_pooling_and_depth_are_refused():
    with pytest.raises(ValueError, match="pooling"):
        pool_frames(torch.zeros(1, 3, 2), None, "max")
    model = shared_small_model(False)
    values, mask = padded_batch(waveforms(8))
    with pytest.raises(ValueError, match="pooling"):
        model.pooled_audio_layers(values, mask, pooling="max")
    for depth in (5, -1, 2.0):
        with pytest.raises(ValueError, match="depth"):
            model.audio_hidden_states(values, mask, depth=depth)
    with pytest.raises(ValueError, match="input_values"):
        model.audio_hidden_states(values[0], None)


# ---------------------------------------------------------------------- 5. config validation
def make_config(**kwargs) -> MERAlignConfig:
    kwargs.setdefault("feature_layers", [1, 2, 3, 4])
    return MERAlignConfig(
        audio_config=tiny_audio_config().to_dict(), text_config=tiny_text_config().to_dict(), **kwargs
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"feature_layers": [1, 5]}, "feature_layers"),
        ({"feature_layers": [-1]}, "feature_layers"),
        ({"feature_layers": []}, "feature_layers"),
        ({"pooling": "max"}, "pooling"),
        ({"head_type": "transformer"}, "head_type"),
        ({"projection_size": 256}, "projection_size"),
        ({"hypothesis_template": "music that sounds"}, "hypothesis_template"),
        ({"default_aggregation": "median"}, "default_aggregation"),
        ({"head_dropout": 1.0}, "head_dropout"),
        ({"segment_seconds": "ten"}, "segment_seconds"),
        ({"multilabel_scale": None}, "multilabel_scale"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_config(**kwargs)


def test_invalid_config_json_is_refused_on_load(tmp_path):
    config = make_config(feature_layers=[1, 2])
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert MERAlignConfig.from_pretrained(tmp_path).feature_layers == [1, 2]
    raw["feature_layers"] = [1, 9]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="feature_layers"):
        MERAlignConfig.from_pretrained(tmp_path)


def test_attention_head_builds_runs_and_round_trips(attention_model, tmp_path):
    assert attention_model.config.head_type == "attention"
    values, mask = padded_batch(waveforms(6))
    with torch.no_grad():
        pooled = attention_model.pooled_audio_layers(values, mask)
        embeds = attention_model.get_audio_features(values, mask)
    assert embeds.shape == (2, 384)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(2))
    # the head reads every selected layer: changing one changes the output
    changed = pooled.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(attention_model.audio_head(changed), embeds)
    attention_model.save_pretrained(tmp_path)
    reloaded = MERAlignModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.head_type == "attention"
    with torch.no_grad():
        assert torch.equal(reloaded.get_audio_features(values, mask), embeds)


def test_trained_values_survive_a_reload(tmp_path):
    """Parameters the model initialises itself (logit scale, layer embedding) must not be re-initialised on load."""
    model = small_model(head_type="attention", head_num_heads=4, multilabel_scale=7.5, multilabel_bias=-2.0)
    with torch.no_grad():
        model.logit_scale.fill_(1.234)
        model.audio_head.layer_embedding.copy_(
            torch.arange(model.audio_head.layer_embedding.numel()).view_as(model.audio_head.layer_embedding) / 100
        )
    model.save_pretrained(tmp_path)
    reloaded = MERAlignModel.from_pretrained(tmp_path)
    assert not reloaded.training
    assert torch.equal(reloaded.logit_scale, model.logit_scale)
    assert torch.equal(reloaded.audio_head.layer_embedding, model.audio_head.layer_embedding)
    assert (reloaded.config.multilabel_scale, reloaded.config.multilabel_bias) == (7.5, -2.0)
    theirs = reloaded.state_dict()
    assert all(torch.equal(theirs[k], v) for k, v in model.state_dict().items())


# -------------------------------------------------------------------------------- 6. forward
def test_forward_logits_are_scaled_cosines(tiny_model, tiny_model_dir):
    feature_extractor = AutoFeatureExtractor.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    audio = feature_extractor(waveforms(7), sampling_rate=SR, padding=True, return_tensors="pt")
    text = tokenizer(LABELS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = tiny_model(
            input_values=audio["input_values"],
            audio_attention_mask=audio["attention_mask"],
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            token_type_ids=text["token_type_ids"],
        )
        audio_embeds = tiny_model.get_audio_features(audio["input_values"], audio["attention_mask"])
        text_embeds = tiny_model.get_text_features(**text)
    assert math.isclose(tiny_model.logit_scale.detach().exp().item(), 1 / 0.07, rel_tol=1e-6)
    expected = tiny_model.logit_scale.exp() * audio_embeds @ text_embeds.T
    assert out.logits_per_audio.shape == (2, len(LABELS))
    torch.testing.assert_close(out.logits_per_audio, expected)
    assert torch.equal(out.logits_per_text, out.logits_per_audio.T)
    assert torch.equal(out.audio_embeds, audio_embeds) and torch.equal(out.text_embeds, text_embeds)
    with pytest.raises(ValueError, match="input_ids"):
        tiny_model(input_values=audio["input_values"])
