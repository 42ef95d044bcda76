"""ONNX export (meralign/onnx_export.py) and the ONNX Runtime backend (onnx_meralign.py) on the tiny model.

Parity with PyTorch for several batch sizes, lengths and padded masks; the early exit inside the graph; the
fingerprint that makes the runtime refuse files of another model; the runtime without torch. One export per
module (about 30 s on 2 cores, most of it the MiniLM text tower).
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (pip install onnxscript)")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")

import onnx_meralign  # noqa: E402
import pipeline_meralign  # noqa: E402
from meralign.data.synthetic.render import render_clip  # noqa: E402
from meralign.onnx_export import export_onnx, model_fingerprint  # noqa: E402
from meralign.publish.folder import save_model_folder  # noqa: E402
from meralign.testing import build_tiny_model  # noqa: E402
from onnx_meralign import MERAlignONNX  # noqa: E402

AUDIO_CASES = [  # (batch, samples, padded samples of the last row)
    (1, 24_000, 0),
    (3, 30_000, 7_000),
    (2, 12_345, 5_000),
    (4, 4_000, 3_000),
]


@pytest.fixture(scope="module")
def exported(tiny_model_onnx):
    """The saved tiny model folder with onnx/ exported into it (conftest's, shared with the Space's tests)."""
    return tiny_model_onnx


@pytest.fixture(scope="module")
def runtime(exported):
    return MERAlignONNX(exported[0], intra_op_threads=1)


def _audio(batch, samples, padded, seed=0):
    values = 0.3 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(batch, samples, dtype=torch.int64)
    if padded:
        mask[-1, samples - padded :] = 0
        values[-1, samples - padded :] = 0.0
    return values, mask


@pytest.mark.parametrize("batch,samples,padded", AUDIO_CASES)
def test_audio_graph_matches_pytorch(runtime, tiny_model, batch, samples, padded):
    values, mask = _audio(batch, samples, padded)
    with torch.no_grad():
        expected = tiny_model.get_audio_features(values, mask).numpy()
    got = runtime.audio_embeddings(values.numpy(), mask.numpy())
    assert got.shape == (batch, tiny_model.config.projection_size)
    assert np.abs(got - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_padding_changes_the_embedding_as_in_pytorch(runtime):
    """The mask is live in the graph: masking half a clip changes its embedding (by what PyTorch says)."""
    values, _ = _audio(1, 24_000, 0)
    full = runtime.audio_embeddings(values.numpy(), np.ones((1, 24_000), np.int64))
    half = np.ones((1, 24_000), np.int64)
    half[0, 12_000:] = 0
    assert float(full[0] @ runtime.audio_embeddings(values.numpy(), half)[0]) < 0.9999


@pytest.mark.parametrize("texts", [["joyful"], ["a slow and melancholic piano piece", "sad", "tense"]])
def test_text_graph_matches_get_text_features(runtime, tiny_model, texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model.config.text_name_or_path)
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = tiny_model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).numpy()
    got = runtime.label_embeddings(tokens["input_ids"].numpy(), tokens["attention_mask"].numpy())
    assert got.shape == (len(texts), 384)
    assert np.abs(got - expected).max() < 1e-5


def test_layout_info_and_fingerprint_metadata(exported, tiny_model):
    folder, info = exported
    onnx_dir = folder / "onnx"
    assert {p.name for p in onnx_dir.iterdir()} >= {"audio_model.onnx", "text_model.onnx", "meralign_onnx.json"}
    assert json.loads((onnx_dir / "meralign_onnx.json").read_text()) == info
    assert info["calibration"]["logit_scale"] == pytest.approx(float(tiny_model.logit_scale))
    assert info["min_valid_samples"] == 400 and info["segment_seconds"] == tiny_model.config.segment_seconds
    fingerprint = model_fingerprint(tiny_model)
    assert info["fingerprint"] == fingerprint
    # what the runtime recomputes from the saved folder agrees with what the exporter computed from the model
    assert onnx_meralign.config_fingerprint(json.loads((folder / "config.json").read_text())) == fingerprint["config"]
    assert onnx_meralign.weights_fingerprint_of_folder(folder) == fingerprint["weights"]
    for name in ("audio_model.onnx", "text_model.onnx"):
        props = {p.key: p.value for p in onnx.load(str(onnx_dir / name), load_external_data=False).metadata_props}
        assert props[onnx_meralign.METADATA_CONFIG_KEY] == fingerprint["config"]
        assert props[onnx_meralign.METADATA_WEIGHTS_KEY] == fingerprint["weights"]


def test_runtime_refuses_onnx_files_of_another_model(exported, tmp_path):
    """Same config, other head weights (another seed): the weights fingerprint names the foreign file."""
    other = tmp_path / "other"
    save_model_folder(build_tiny_model(seed=1), other)
    shutil.copytree(exported[0] / "onnx", other / "onnx")
    with pytest.raises(ValueError, match=r"audio_model\.onnx was exported from another model: its weights"):
        MERAlignONNX(other)
    MERAlignONNX(other, check_weights=False)  # the config alone matches: it is the same architecture


def test_runtime_refuses_another_config(exported):
    config = json.loads((exported[0] / "config.json").read_text())
    config["feature_layers"] = [1, 2]
    with pytest.raises(ValueError, match=r"meralign_onnx\.json belongs to another model"):
        MERAlignONNX(exported[0], config=config)


def test_graph_stops_after_the_deepest_layer_the_head_uses(exported, tmp_path):
    """feature_layers [1, 2] of 4: the audio graph holds 2 attention blocks, not 4 (the TorchScript exporter,
    3 s instead of 30: where the tower stops is the model's doing, not the exporter's)."""
    model = build_tiny_model(feature_layers=[1, 2])
    export_onnx(model, tmp_path, dynamo=False, text=False)
    graph = onnx.load(str(tmp_path / "onnx" / "audio_model.onnx"), load_external_data=False).graph
    assert sum(node.op_type == "Softmax" for node in graph.node) == 2
    full = onnx.load(str(exported[0] / "onnx" / "audio_model.onnx"), load_external_data=False).graph
    assert sum(node.op_type == "Attention" for node in full.node) == 4  # the default export: all 4 layers used
    with torch.no_grad():
        values, mask = _audio(2, 16_000, 4_000)
        expected = model.get_audio_features(values, mask).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx" / "audio_model.onnx"))
    got = session.run(None, {"input_values": values.numpy(), "attention_mask": mask.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-5


def test_torchscript_exporter_fallback_matches(tiny_model, tmp_path):
    export_onnx(tiny_model, tmp_path, dynamo=False, text=False)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx" / "audio_model.onnx"))
    values, mask = _audio(3, 20_000, 6_000)
    with torch.no_grad():
        expected = tiny_model.get_audio_features(values, mask).numpy()
    got = session.run(None, {"input_values": values.numpy(), "attention_mask": mask.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize(
    ("variant", "int8_ops"),
    [("quantized", {"MatMulInteger", "DynamicQuantizeMatMul"}), ("int8", {"QLinearMatMul", "QLinearConv"})],
)
def test_int8_variants_keep_fingerprint_and_direction(exported, runtime, variant, int8_ops):
    """export_onnx(quantized=True, calibration_audio=...): audio_model_quantized.onnx (dynamic) and
    audio_model_int8.onnx (static), listed in the JSON with their cosine, fingerprinted, close to float32."""
    folder, info = exported
    assert info["files"]["audio"] == {
        "fp32": "audio_model.onnx",
        "quantized": "audio_model_quantized.onnx",
        "int8": "audio_model_int8.onnx",
    }
    assert info["cosine_to_fp32"][f"audio/{variant}"] >= 0.999 and "rejected" not in info
    quantized = MERAlignONNX(folder, audio_variant=variant)  # passes the fingerprint check
    graph = onnx.load(str(folder / "onnx" / f"audio_model_{variant}.onnx"), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert ops & int8_ops if variant == "quantized" else int8_ops <= ops  # dynamic: either MatMul kernel
    values, mask = _audio(2, 24_000, 8_000)
    cosine = np.sum(
        quantized.audio_embeddings(values.numpy(), mask.numpy())
        * runtime.audio_embeddings(values.numpy(), mask.numpy()),
        axis=1,
    )
    assert cosine.min() > 0.99


def test_session_options_and_argument_errors(exported, runtime):
    options = onnx_meralign.session_options("basic", 1)
    assert options.intra_op_num_threads == 1 and not options.enable_mem_pattern
    with pytest.raises(ValueError, match="graph_optimization_level"):
        onnx_meralign.session_options("fastest")
    with pytest.raises(ValueError, match="intra_op_threads"):
        onnx_meralign.session_options("all", -1)
    with pytest.raises(ValueError, match=r"input_values must be \[batch, samples\]"):
        runtime.audio_embeddings(np.zeros(24_000, np.float32))
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        runtime.audio_embeddings(np.zeros((1, 800), np.float32), np.ones((1, 400), np.int64))
    with pytest.raises(FileNotFoundError, match="audio_model_uint8.onnx not found"):
        MERAlignONNX(exported[0], audio_variant="uint8")


def test_missing_onnxruntime_is_a_clear_import_error(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        MERAlignONNX(exported[0])


def test_runtime_runs_from_the_model_folder_without_torch(exported, runtime, run_isolated, tmp_path):
    """Shipped as remote code: the folder's copy alone, in an interpreter where the project is absent and torch
    blocked."""
    folder = exported[0]
    assert (folder / "onnx_meralign.py").is_file()  # saved with the remote code, as the pipeline imports it
    values, mask = _audio(2, 24_000, 6_000)
    np.save(tmp_path / "values.npy", values.numpy())
    np.save(tmp_path / "mask.npy", mask.numpy())
    expected = runtime.audio_embeddings(values.numpy(), mask.numpy())
    result = run_isolated(f"""
        import sys
        sys.modules["torch"] = None  # any torch import fails
        sys.path.insert(0, {str(folder)!r})
        import numpy as np
        from onnx_meralign import MERAlignONNX
        runtime = MERAlignONNX({str(folder)!r})
        values, mask = np.load({str(tmp_path / "values.npy")!r}), np.load({str(tmp_path / "mask.npy")!r})
        out = runtime.audio_embeddings(values, mask)
        np.save({str(tmp_path / "out.npy")!r}, out)
    """)
    assert result.returncode == 0
    assert np.abs(np.load(tmp_path / "out.npy") - expected).max() < 1e-6


def test_text_graph_uses_get_label_embeddings_when_the_model_has_it(tmp_path):
    """The label vectors a model scores with (a saved transform of the sentence embedding) are what is exported."""
    from transformers import AutoTokenizer

    model = build_tiny_model()
    scale = torch.ones(384)
    scale[:8] = 3.0  # a low-rank rescaling of a few directions, then re-normalisation

    def get_label_embeddings(input_ids, attention_mask):
        return torch.nn.functional.normalize(model.get_text_features(input_ids, attention_mask) * scale, dim=-1)

    model.get_label_embeddings = get_label_embeddings
    export_onnx(model, tmp_path, dynamo=False)  # the TorchScript exporter: seconds, and the same wrapper
    tokenizer = AutoTokenizer.from_pretrained(model.config.text_name_or_path)
    tokens = tokenizer(["joyful", "a calm evening"], padding=True, return_tensors="pt")
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx" / "text_model.onnx"))
    got = session.run(None, {k: tokens[k].numpy() for k in ("input_ids", "attention_mask")})[0]
    with torch.no_grad():
        transformed = get_label_embeddings(tokens["input_ids"], tokens["attention_mask"]).numpy()
        plain = model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).numpy()
    assert np.abs(got - transformed).max() < 1e-5
    assert np.abs(got - plain).max() > 1e-3


# ------------------------------------------------------------------------------ the pipeline's backend
@pytest.fixture(scope="module")
def folder_model(exported):
    """The exported folder's model, loaded from it (its name_or_path is the folder), and its processors."""
    from modeling_meralign import MERAlignModel, build_processors

    model = MERAlignModel.from_pretrained(exported[0]).eval()
    return model, build_processors(model.config, exported[0])  # the folder holds the tokenizer files


def _pipe(folder_model, backend):
    model, (feature_extractor, tokenizer) = folder_model
    return pipeline_meralign.ZeroShotMusicEmotionPipeline(
        model=model, tokenizer=tokenizer, feature_extractor=feature_extractor, backend=backend
    )


@pytest.mark.parametrize(
    ("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-quantized", 0.999), ("onnx-int8", 0.999)]
)
def test_pipeline_backend_scores_like_pytorch(folder_model, backend, min_cosine):
    """Real-shaped input (synthetic music, 26 s: two full 10 s segments and a padded last one), both backends."""
    clip = render_clip(["joyful", "tense"], seed=1, seconds=26.0, sampling_rate=24_000)
    labels = ["joyful", "melancholic", "tense", "a calm evening by the sea"]
    reference, onnx_pipe = _pipe(folder_model, "torch"), _pipe(folder_model, backend)
    expected, times = reference.recording_embeddings(clip)
    got, onnx_times = onnx_pipe.recording_embeddings(clip)
    assert onnx_times == times and len(times) == 3
    assert float((expected * got).sum(dim=1).min()) >= min_cosine
    assert (reference.label_embeddings(labels) - onnx_pipe.label_embeddings(labels)).abs().max() < 1e-5
    scores = {r["label"]: r["score"] for r in reference(clip, candidate_labels=labels)}
    onnx_scores = {r["label"]: r["score"] for r in onnx_pipe(clip, candidate_labels=labels)}
    tolerance = 1e-4 if backend == "onnx" else 1e-2
    assert max(abs(scores[label] - onnx_scores[label]) for label in labels) < tolerance


def test_pipeline_backend_errors_name_the_problem(folder_model, tiny_model, tiny_model_dir):
    from modeling_meralign import MERAlignModel

    with pytest.raises(ValueError, match="backend must be one of"):
        _pipe(folder_model, "tensorflow")
    without_onnx = MERAlignModel.from_pretrained(tiny_model_dir).eval()
    with pytest.raises(FileNotFoundError, match="meralign_onnx.json not found"):
        _pipe((without_onnx, folder_model[1]), "onnx")
    with pytest.raises(ValueError, match="no name_or_path"):
        _pipe((build_tiny_model(), folder_model[1]), "onnx")


def test_quantised_backend_refused_on_cpus_without_int8_kernels(folder_model, monkeypatch):
    monkeypatch.setattr(onnx_meralign.platform, "machine", lambda: "riscv64")
    with pytest.raises(ValueError, match="riscv64.*backend='onnx'"):
        _pipe(folder_model, "onnx-quantized")
    assert _pipe(folder_model, "onnx").backend == "onnx"  # float32 runs anywhere


def test_switching_backend_empties_the_caches_and_a_failed_switch_keeps_the_current_one(folder_model, monkeypatch):
    pipe = _pipe(folder_model, "torch")
    clip = render_clip(["calm"], seed=2, seconds=10.0, sampling_rate=24_000)
    torch_embeds, _ = pipe.recording_embeddings(clip)
    pipe.label_embeddings(["calm"])
    pipe.use_backend("onnx")
    assert pipe.backend == "onnx" and not pipe._audio_cache and not pipe._label_cache
    onnx_embeds, _ = pipe.recording_embeddings(clip)
    assert not torch.equal(torch_embeds, onnx_embeds)  # computed again, by ONNX Runtime
    assert float((torch_embeds * onnx_embeds).sum()) >= 0.9999
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        pipe.use_backend("onnx-quantized")
    assert pipe.backend == "onnx" and len(pipe._audio_cache) == 1  # unchanged


def test_an_audio_only_export_checks_its_int8_variant_without_a_text_model(tiny_model, tmp_path):
    """export_onnx(text=False, quantized=True): the accuracy check opens the two audio models only."""
    folder = tmp_path / "audio_only"
    save_model_folder(tiny_model, folder)
    info = export_onnx(tiny_model, folder, text=False, quantized=True)
    assert "text" not in info["files"] and not (folder / "onnx" / "text_model.onnx").exists()
    assert info["cosine_to_fp32"]["audio/quantized"] >= 0.999  # the tiny model passes the bar
    runtime = MERAlignONNX(folder, text_variant=None)
    assert set(runtime.sessions) == {"audio"}
    with pytest.raises(ValueError, match="text_variant=None"):
        runtime.label_embeddings(np.ones((1, 3), np.int64))


def test_a_variant_below_the_accuracy_bar_is_deleted_and_its_rejection_recorded(tiny_model, tmp_path, monkeypatch):
    """Both int8 variants fail a bar no int8 graph reaches: neither file ships, the JSON says why. A later export
    also removes variant files an earlier one left."""
    from meralign import onnx_quantize

    folder = tmp_path / "model"
    save_model_folder(tiny_model, folder)
    export_onnx(tiny_model, folder, text=False, quantized=True)
    assert (folder / "onnx" / "audio_model_quantized.onnx").is_file()
    monkeypatch.setattr(onnx_quantize, "QUANTIZED_MIN_COSINE", 1.5)
    clip = render_clip(["calm"], seed=60, seconds=5.0, sampling_rate=tiny_model.config.sampling_rate)
    info = export_onnx(tiny_model, folder, text=False, quantized=True, calibration_audio=[clip])
    assert info["files"]["audio"] == {"fp32": "audio_model.onnx"}
    assert set(info["rejected"]) == {"audio/quantized", "audio/int8"}
    assert "< 1.5" in info["rejected"]["audio/int8"]
    assert sorted(p.name for p in (folder / "onnx").glob("audio_model*.onnx")) == ["audio_model.onnx"]


def test_calibration_audio_is_split_into_calibration_feeds_and_held_out_check_segments(tiny_model):
    from meralign.onnx_quantize import calibration_split

    config = tiny_model.config
    segment = int(config.segment_seconds * config.sampling_rate)
    clips = [np.full(int(2.5 * segment), i, np.float32) for i in range(3)]  # 2 whole segments each
    feeds, check = calibration_split(clips + [np.zeros(segment // 3, np.float32)], config, max_segments=4)
    assert [f["input_values"].shape for f in feeds] == [(1, segment)] * 3 + [(1, segment // 3)]
    assert [float(f["input_values"][0, 0]) for f in feeds[:3]] == [0.0, 1.0, 2.0]  # spread: clips 0, 1, 2
    assert all(f["attention_mask"].all() and f["attention_mask"].dtype == np.int64 for f in feeds)
    assert [(len(x), float(x[0])) for x in check] == [(segment, 0.0), (segment, 1.0), (segment, 2.0)]  # the rest
    assert calibration_split(clips, config, max_segments=8)[1] == []  # all six calibrate: none left to check
    for bad, match in (
        ([], "non-empty list"),
        (np.zeros(segment, np.float32), "non-empty list"),
        ([np.zeros((2, segment), np.float32)], r"calibration_audio\[0\] must be a finite 1-D"),
        ([np.zeros(segment), np.zeros(10)], r"calibration_audio\[1\].*at least"),
        ([np.full(segment, np.nan)], "finite"),
    ):
        with pytest.raises(ValueError, match=match):
            calibration_split(bad, config)
    with pytest.raises(ValueError, match="max_segments"):
        calibration_split(clips, config, max_segments=0)


def test_the_accuracy_check_covers_the_held_out_calibration_segments(tiny_model_onnx, tiny_model):
    """A check segment on which the variant drifts decides the cosine, whatever CHECK_CLIPS say."""
    from meralign.onnx_quantize import variant_cosine

    folder, _ = tiny_model_onnx
    base = variant_cosine(tiny_model, folder, "int8")
    loud = render_clip(["angry"], seed=70, seconds=4.0, sampling_rate=tiny_model.config.sampling_rate)
    with_check = variant_cosine(tiny_model, folder, "int8", [loud * 50.0, loud[:20_000]])
    assert with_check < base  # far outside the calibrated ranges: the worst cosine comes from the check segment
