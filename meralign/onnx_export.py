"""Export a MERAlignModel to ONNX: the audio encoder and the label encoder, fingerprinted.

    from meralign.onnx_export import export_onnx
    export_onnx(model, "outputs/model")  # writes outputs/model/onnx/{audio,text}_model.onnx, meralign_onnx.json

The exporter is torch.onnx's dynamo-based one (`torch.export` + onnxscript, the default of torch >= 2.9; the
TorchScript exporter is deprecated) at opset 23, where SDPA becomes ONNX's fused `Attention` op and the front
end's GroupNorm `GroupNormalization`: ORT ran the MERT-95M tower 1.3x faster than at opset 18 (one Where, IsNaN
and Softmax pass per layer over the [batch, heads, frames, frames] scores fewer), and onnxruntime-web 1.30 runs
it. `dynamo=False` selects the TorchScript exporter (opset 17), kept as a fallback; both give the same results
up to float rounding (tests/test_onnx_export.py). The audio
graph runs the tower only up to the deepest layer the head uses, then the masked mean pooling and the head,
exactly `model.get_audio_features`. The runtime side is onnx_meralign.py (remote code, no torch).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from audio_meralign import receptive_field
from onnx_meralign import (
    AUDIO_INPUTS,
    INFO_FILE,
    METADATA_CONFIG_KEY,
    METADATA_WEIGHTS_KEY,
    ONNX_SUBFOLDER,
    TEXT_INPUTS,
    TOWER_PREFIXES,
    VARIANT_SUFFIXES,
    config_fingerprint,
    onnx_file_name,
    tensors_fingerprint,
    torch_dtype_code,
)
from scoring_meralign import label_templates, label_text

DYNAMO_OPSET = 23  # see the module docstring; tested with onnxruntime 1.32 and onnxruntime-web 1.30
TORCHSCRIPT_OPSET = 17
# torch.export needs an upper bound for the batch dimension (see `_whole_batch_front_end`)
MAX_EXPORT_BATCH = 1 << 16
TEXT_MAX_LENGTH = 256  # the pipeline's label truncation (all-MiniLM-L6-v2's max_seq_length)
INFO_FORMAT_VERSION = 1


class AudioEncoder(nn.Module):
    """(input_values float32 [B, S], attention_mask int64 [B, S]) -> L2-normalised audio embeddings [B, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_audio_features(input_values, attention_mask)


class LabelEncoder(nn.Module):
    """(input_ids, attention_mask) -> the label vectors used for scoring [B, D], L2-normalised.

    `get_label_embeddings` (the sentence embedding after the model's saved label transform) when the model
    has it, else `get_text_features` (the plain sentence embedding, which it equals without a transform).
    No token_type_ids input: a label is one segment, all of type 0, and transformers.js feeds only the inputs
    a session declares.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embed = getattr(model, "get_label_embeddings", None) or model.get_text_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids, attention_mask)


@contextmanager
def _quiet_exporters():
    """Keep the exporters' and the quantiser's notices about their own internals (torchvision ops skipped, axis
    names merged, deprecations, a pre-processing hint) out of the user's terminal; errors still raise."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir", "")  # "": the quantiser's
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextmanager
def _whole_batch_front_end(model):
    """Run the conv front end on the whole batch while exporting.

    The model's CPU default ("auto") slices the batch by a Python rule on the input's length: torch.export turns
    that into a guard on the batch size, and a trace would bake in the traced slicing. ORT plans its own memory,
    so the graph takes the whole batch at once.
    """
    before = getattr(model, "audio_front_end_batch", None)
    if before is not None:
        model.audio_front_end_batch = MAX_EXPORT_BATCH
    try:
        yield
    finally:
        if before is not None:
            model.audio_front_end_batch = before


def model_fingerprint(model) -> dict:
    """{"config", "weights"} digests, computed the way onnx_meralign checks them against a saved folder."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    tensors = []
    for name, tensor in model.state_dict().items():
        if name.startswith(TOWER_PREFIXES):  # not fingerprinted: skip the copy of ~400 MB of tower weights
            continue
        data = tensor.detach().cpu().contiguous()
        raw = data.view(torch.int16) if data.dtype == torch.bfloat16 else data  # numpy has no bfloat16
        # native byte order is little-endian on every platform torch ships for, as safetensors stores it
        tensors.append((name, torch_dtype_code(data.dtype), list(data.shape), raw.numpy().tobytes()))
    return {"config": config_fingerprint(config), "weights": tensors_fingerprint(tensors)}


def _dummy_audio(model, seconds: float, batch: int = 2):
    samples = int(seconds * model.config.sampling_rate)
    generator = torch.Generator().manual_seed(0)
    values = 0.1 * torch.randn(batch, samples, generator=generator)
    mask = torch.ones(batch, samples, dtype=torch.int64)
    mask[-1, samples // 2 :] = 0  # a padded row: the mask path is traced as used
    return values, mask


def _dummy_text(model, batch: int = 2, tokens: int = 8):
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(1000, vocab, (batch, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, tokens, dtype=torch.int64)
    mask[-1, tokens // 2 :] = 0
    return ids, mask


def _export_one(module, args, path: Path, input_names, output_name, dims, dynamo: bool, opset: int | None):
    """One graph, dynamic in every axis named in `dims` ({input: {axis: (name, min, max)}}), in a single file."""
    if dynamo:
        shapes = {}
        made = {}
        for name in input_names:
            shapes[name] = {}
            for axis, (dim_name, low, high) in dims[name].items():
                made.setdefault(dim_name, torch.export.Dim(dim_name, min=low, max=high))
                shapes[name][axis] = made[dim_name]
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=opset or DYNAMO_OPSET,
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
        program.save(str(path), external_data=False)
    else:
        axes = {name: {axis: spec[0] for axis, spec in dims[name].items()} for name in input_names}
        axes[output_name] = {0: "batch"}
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset or TORCHSCRIPT_OPSET,
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=axes,
        )


def _stamp(path: Path, fingerprint: dict, extra: dict) -> None:
    """Write the model's fingerprint (and a few facts) into the file's metadata_props."""
    import onnx

    proto = onnx.load(str(path))
    entries = {METADATA_CONFIG_KEY: fingerprint["config"], METADATA_WEIGHTS_KEY: fingerprint["weights"], **extra}
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.save(proto, str(path))


def export_onnx(
    model,
    folder,
    *,
    dynamo: bool = True,
    opset: int | None = None,
    dummy_seconds: float = 1.0,
    text: bool = True,
    quantized: bool = False,
    calibration_audio=None,
) -> dict:
    """Write `folder/onnx/audio_model.onnx`, `text_model.onnx` (unless `text=False`) and `meralign_onnx.json`.

    `quantized` also writes `audio_model_quantized.onnx` (dynamic int8, needs no data); `calibration_audio`
    (1-D float arrays at the model's sampling rate: training audio, never the audio you evaluate on) also
    writes `audio_model_int8.onnx` (static int8, activation ranges calibrated on it). Each quantised variant is
    kept only when it passes the accuracy bar of meralign.onnx_quantize; its cosine (or the rejection) is
    recorded in the JSON.
    Returns the info written to the JSON. The model is exported in eval mode and float32, whatever it was
    (and put back as it was). The JSON holds what a client needs besides the graphs: the fingerprint, the
    calibration (logit_scale, multilabel_scale/bias), sampling rate, segment length and the minimum number of
    valid samples per segment (one encoder frame), so a browser page needs no config.json parsing.
    """
    if getattr(model, "is_quantized_for_cpu", False):
        raise ValueError("export the float32 model: a model quantised with quantize_for_cpu() has packed int8 weights")
    out = Path(folder) / ONNX_SUBFOLDER
    out.mkdir(parents=True, exist_ok=True)
    for variant in VARIANT_SUFFIXES:  # a variant of an earlier export is not listed in the new JSON: remove it
        if variant != "fp32":
            (out / onnx_file_name("audio", variant)).unlink(missing_ok=True)
    fingerprint = model_fingerprint(model)
    opset = opset or (DYNAMO_OPSET if dynamo else TORCHSCRIPT_OPSET)
    stamp = {"meralign.exporter": "dynamo" if dynamo else "torchscript", "meralign.torch_version": torch.__version__}
    was_training, dtype = model.training, model.dtype
    model.eval().float()
    try:
        with torch.no_grad(), _whole_batch_front_end(model), _quiet_exporters():
            _export_audio(model, out / onnx_file_name("audio"), dummy_seconds, dynamo, opset)
            if text:
                _export_text(model, out / onnx_file_name("text"), dynamo, opset)
    finally:
        model.to(dtype).train(was_training)
    for kind in ("audio", "text") if text else ("audio",):
        _stamp(out / onnx_file_name(kind), fingerprint, stamp)
    write_info(folder, _info(model, fingerprint, opset, dynamo, text))
    if quantized or calibration_audio is not None:
        from meralign.onnx_quantize import add_dynamic_int8, add_static_int8

        with _quiet_exporters():
            if quantized:
                add_dynamic_int8(model, folder)
            if calibration_audio is not None:
                add_static_int8(model, folder, calibration_audio)
    return read_info(folder)


def record_info(folder, key: str, entries: dict) -> None:
    """Merge `entries` into meralign_onnx.json's `key` section."""
    info = read_info(folder)
    info.setdefault(key, {}).update(entries)
    write_info(folder, info)


def read_info(folder) -> dict:
    return json.loads((Path(folder) / ONNX_SUBFOLDER / INFO_FILE).read_text(encoding="utf-8"))


def write_info(folder, info: dict) -> None:
    """Atomically: a reader (or a kill) never sees half a JSON file."""
    path = Path(folder) / ONNX_SUBFOLDER / INFO_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _export_audio(model, path: Path, dummy_seconds: float, dynamo: bool, opset: int) -> None:
    config = model.config
    max_samples = int(3600 * config.sampling_rate)  # an hour in one segment: far beyond any use
    samples = ("samples", receptive_field(config.audio_config), max_samples)
    dims = {name: {0: ("batch", 1, MAX_EXPORT_BATCH), 1: samples} for name in AUDIO_INPUTS}
    inputs = _dummy_audio(model, dummy_seconds)
    _export_one(AudioEncoder(model).eval(), inputs, path, AUDIO_INPUTS, "audio_embeds", dims, dynamo, opset)


def _export_text(model, path: Path, dynamo: bool, opset: int) -> None:
    tokens = ("tokens", 1, model.config.text_config.max_position_embeddings)
    dims = {name: {0: ("batch", 1, MAX_EXPORT_BATCH), 1: tokens} for name in TEXT_INPUTS}
    encoder = LabelEncoder(model).eval()
    _export_one(encoder, _dummy_text(model), path, TEXT_INPUTS, "text_embeds", dims, dynamo, opset)


def _info(model, fingerprint: dict, opset: int, dynamo: bool, text: bool) -> dict:
    config = model.config
    files = {"audio": {"fp32": onnx_file_name("audio")}}
    if text:
        files["text"] = {"fp32": onnx_file_name("text")}
    return {
        "format_version": INFO_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "calibration": {
            "logit_scale": float(model.logit_scale.detach()),
            "multilabel_scale": config.multilabel_scale,
            "multilabel_bias": config.multilabel_bias,
        },
        "sampling_rate": config.sampling_rate,
        "segment_seconds": config.segment_seconds,
        "min_valid_samples": receptive_field(config.audio_config),
        "min_last_fraction": 0.5,
        "hypothesis_template": config.hypothesis_template,
        # how a label becomes the texts the text graph embeds (the page averages their vectors, as the pipeline)
        "templates": label_templates(config.label_space, config.hypothesis_template),
        "label_underscores_to_spaces": label_text("a_b", config.label_space) == "a b",
        "text_max_length": TEXT_MAX_LENGTH,
        "projection_size": config.projection_size,
        "files": files,
        "inputs": {"audio": ["input_values", "attention_mask"], "text": ["input_ids", "attention_mask"]},
        "outputs": {"audio": "audio_embeds", "text": "text_embeds"},
        "exporter": {
            "name": "torch.onnx dynamo" if dynamo else "torch.onnx torchscript",
            "opset": opset,
            "torch": torch.__version__,
        },
    }
