"""The model fingerprint: a digest of everything a library's stored audio vectors depend on.

A library's vectors are only comparable with label vectors and new recordings embedded by the model that made
them. The fingerprint covers the audio tower's and head's weights (as loaded, so a bf16 or int8 copy of the same
model is a different model: its vectors differ) and the config fields that change an embedding. The text tower
is left out on purpose: it changes label vectors, not the stored ones. Hashing MERT-95M's weights reads about
380 MB once, well under a second, so every command checks it instead of trusting a model id.
"""

from __future__ import annotations

import hashlib
import json

import torch

# The parts of MERAlignModel whose weights shape an audio embedding.
AUDIO_PREFIXES = ("audio_model.", "audio_head.")
# Config fields that change an embedding without changing any weight.
CONFIG_FIELDS = (
    "feature_layers",
    "pooling",
    "sampling_rate",
    "segment_seconds",
    "projection_size",
    "head_type",
    "head_hidden_size",
    "head_num_layers",
    "head_num_heads",
)
AUDIO_CONFIG_FIELDS = (
    "hidden_act",
    "layer_norm_eps",
    "feat_extract_norm",
    "feat_extract_activation",
    "do_stable_layer_norm",
    "conv_kernel",
    "conv_stride",
)


def model_fingerprint(model) -> str:
    """A hex digest of `model`'s audio side (a MERAlignModel): equal digests give equal audio vectors."""
    if not hasattr(model, "state_dict") or not hasattr(model, "config"):
        raise TypeError(f"model must be a MERAlignModel, got {type(model).__name__}")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(_config_fields(model), sort_keys=True).encode())
    for name, value in sorted(model.state_dict().items()):
        if name.startswith(AUDIO_PREFIXES):
            digest.update(name.encode())
            _update(digest, value)
    return digest.hexdigest()


def _config_fields(model) -> dict:
    config = model.config
    fields = {name: getattr(config, name, None) for name in CONFIG_FIELDS}
    fields["audio_config"] = {name: getattr(config.audio_config, name, None) for name in AUDIO_CONFIG_FIELDS}
    fields["int8_audio_tower"] = bool(getattr(model, "is_quantized_for_cpu", False))
    return json.loads(json.dumps(fields, default=list))  # tuples and lists hash alike


def _update(digest, value) -> None:
    """Feed one state-dict entry: a tensor's dtype, shape and bytes; int8 packed params as their values."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_quantized:
            tensor = tensor.dequantize()
        tensor = tensor.contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, (tuple, list)):
        for item in value:
            _update(digest, item)
    else:
        digest.update(repr(value).encode())
