"""ONNX Runtime backend of MERAlign: the exported audio and label encoders, without torch.

Part of the model's remote code: imports only the standard library and numpy at top level; onnxruntime is
imported when a session is built, and its absence is reported with the install command. The files come from
`meralign.onnx_export.export_onnx`, in the layout optimum and transformers.js use:

    model folder/config.json, model.safetensors, tokenizer.json, ...
    model folder/onnx/audio_model.onnx      input_values float32 [batch, samples], attention_mask int64 -> audio_embeds
    model folder/onnx/text_model.onnx       input_ids int64 [batch, tokens], attention_mask int64 -> text_embeds
    model folder/onnx/meralign_onnx.json    fingerprint, calibration (logit_scale, ...), segmenting settings

Every ONNX file carries the fingerprint of the model it was exported from (ONNX metadata_props), so an ONNX
file copied from another model is refused with a ValueError that names it, instead of scoring silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
from pathlib import Path

import numpy as np

ONNX_SUBFOLDER = "onnx"
AUDIO_FILE = "audio_model.onnx"
TEXT_FILE = "text_model.onnx"
INFO_FILE = "meralign_onnx.json"
# variant -> file-name suffix, as transformers.js names them (model.onnx, model_quantized.onnx, model_int8.onnx)
VARIANT_SUFFIXES = {"fp32": "", "quantized": "_quantized", "int8": "_int8", "uint8": "_uint8", "fp16": "_fp16"}
AUDIO_INPUTS = ("input_values", "attention_mask")
TEXT_INPUTS = ("input_ids", "attention_mask")
METADATA_CONFIG_KEY = "meralign.config_fingerprint"
METADATA_WEIGHTS_KEY = "meralign.weights_fingerprint"
# The towers are pretrained and frozen: what tells two trained MERAlign models apart is everything else
# (the head, logit_scale, any saved label transform). Only those tensors enter the weights fingerprint.
TOWER_PREFIXES = ("audio_model.", "text_model.")
# The config fields the exported graphs bake in. A field list, not the whole config.json: fields transformers
# adds or drops between versions must not make a matching file look foreign.
CONFIG_FIELDS = (
    "model_type",
    "feature_layers",
    "pooling",
    "head_type",
    "head_hidden_size",
    "head_num_layers",
    "head_num_heads",
    "projection_size",
    "sampling_rate",
)
AUDIO_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "conv_dim",
    "conv_kernel",
    "conv_stride",
    "conv_bias",
    "feat_extract_norm",
    "feat_extract_activation",
    "do_stable_layer_norm",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "feat_proj_layer_norm",
    "layer_norm_eps",
    "hidden_act",
)
TEXT_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_act",
)
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# The pipeline's `backend=` names -> the audio variant they run (None: PyTorch). The label encoder is always
# float32: labels are few and cached, and int8 would only move their vectors.
BACKENDS = {"torch": None, "onnx": "fp32", "onnx-quantized": "quantized", "onnx-int8": "int8"}
# ONNX Runtime's int8 MatMul kernels (MatMulInteger / DynamicQuantizeMatMul) are written for these CPUs.
INT8_MACHINES = ("x86_64", "amd64", "aarch64", "arm64")
_TORCH_TO_SAFETENSORS_DTYPE = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


# ----------------------------------------------------------------------------------------- fingerprints
def config_fingerprint(config: dict) -> str:
    """sha256 of the graph-defining fields of a MERAlign config dict (config.json parsed, or `config.to_dict()`)."""
    picked = {name: config.get(name) for name in CONFIG_FIELDS}
    for sub, fields in (("audio_config", AUDIO_CONFIG_FIELDS), ("text_config", TEXT_CONFIG_FIELDS)):
        sub_config = config.get(sub) or {}
        picked[sub] = {name: sub_config.get(name) for name in fields}
    canonical = json.dumps(picked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def tensors_fingerprint(tensors) -> str:
    """sha256 over (name, safetensors dtype, shape, raw little-endian bytes) of the non-tower tensors, by name."""
    digest = hashlib.sha256()
    for name, dtype, shape, data in sorted(tensors, key=lambda item: item[0]):
        if name.startswith(TOWER_PREFIXES):
            continue
        digest.update(f"{name}|{dtype}|{list(shape)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def torch_dtype_code(dtype) -> str:
    """The safetensors dtype code of a torch dtype (given as the dtype or its string), e.g. torch.float32 -> F32."""
    return _TORCH_TO_SAFETENSORS_DTYPE[str(dtype).replace("torch.", "")]


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _read_safetensors_tensors(path: Path):
    """(name, dtype, shape, bytes) of the non-tower tensors of one safetensors file, reading only those bytes."""
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        for name, entry in header.items():
            if name == "__metadata__" or name.startswith(TOWER_PREFIXES):
                continue
            begin, end = entry["data_offsets"]
            handle.seek(8 + header_size + begin)
            yield name, entry["dtype"], entry["shape"], handle.read(end - begin)


def weights_fingerprint_of_folder(folder) -> str | None:
    """The weights fingerprint of a saved model folder's safetensors (None when the folder holds none)."""
    files = _safetensors_files(Path(folder))
    if not files:
        return None
    return tensors_fingerprint(item for path in files for item in _read_safetensors_tensors(path))


# ------------------------------------------------------------------------------------------ the runtime
def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "the ONNX backend of MERAlign needs onnxruntime: pip install onnxruntime (or use the PyTorch backend)"
        ) from err
    return onnxruntime


def session_options(
    graph_optimization_level: str = "all", intra_op_threads: int | None = None, memory_pattern: bool = False
):
    """onnxruntime SessionOptions: a named graph optimisation level and the intra-op thread count (None: ORT's
    default, one per physical core). Sequential execution: the graphs are chains, parallel branches gain nothing.

    `memory_pattern` off by default: with it (ORT's default) each run of a new input shape takes one fresh block
    for all activations, and first touches of those pages made the MERT-95M tower 1.4-1.8x slower on 3 x 10 s
    segments (benchmarks/onnx_cpu.py); without it the arena's chunks are reused from run to run."""
    ort = _onnxruntime()
    if graph_optimization_level not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(
            f"graph_optimization_level must be one of {GRAPH_OPTIMIZATION_LEVELS}, got {graph_optimization_level!r}"
        )
    if intra_op_threads is not None and (
        isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int) or intra_op_threads < 0
    ):
        raise ValueError(f"intra_op_threads must be an int >= 0 (0: ORT's default) or None, got {intra_op_threads!r}")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[graph_optimization_level]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = bool(memory_pattern)
    options.inter_op_num_threads = 1
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    return options


def onnx_file_name(kind: str, variant: str = "fp32") -> str:
    """`audio_model.onnx`, `text_model_quantized.onnx`, ...: kind is "audio" or "text"."""
    if kind not in ("audio", "text"):
        raise ValueError(f"kind must be 'audio' or 'text', got {kind!r}")
    if variant not in VARIANT_SUFFIXES:
        raise ValueError(f"variant must be one of {tuple(VARIANT_SUFFIXES)}, got {variant!r}")
    return f"{kind}_model{VARIANT_SUFFIXES[variant]}.onnx"


class MERAlignONNX:
    """The two ONNX Runtime sessions of an exported MERAlign model folder, checked against its config.

    `audio_variant` / `text_variant` pick `audio_model<suffix>.onnx` (see VARIANT_SUFFIXES); `text_variant=None`
    opens the audio model only (what checking an audio variant needs). `config` defaults to
    the folder's config.json (a dict, or an object with `to_dict()`, may be given instead). With
    `check_weights`, the fingerprint of the folder's safetensors (head and calibration tensors only, a few MB
    read) must match too, where the folder has them.
    """

    def __init__(
        self,
        folder,
        *,
        config=None,
        audio_variant: str = "fp32",
        text_variant: str | None = "fp32",
        graph_optimization_level: str = "all",
        intra_op_threads: int | None = None,
        memory_pattern: bool = False,
        providers=None,
        check_weights: bool = True,
    ):
        ort = _onnxruntime()
        self.folder = Path(folder)
        self.config = self._config_dict(config)
        self.info = self._read_info()
        options = session_options(graph_optimization_level, intra_op_threads, memory_pattern)
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        expected = {METADATA_CONFIG_KEY: config_fingerprint(self.config)}
        if check_weights:
            weights = weights_fingerprint_of_folder(self.folder)
            if weights is not None:
                expected[METADATA_WEIGHTS_KEY] = weights
        self.sessions = {}
        kinds = [("audio", audio_variant, AUDIO_INPUTS)]
        kinds += [("text", text_variant, TEXT_INPUTS)] if text_variant is not None else []
        for kind, variant, inputs in kinds:
            path = self.folder / ONNX_SUBFOLDER / onnx_file_name(kind, variant)
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: export it with meralign.onnx_export.export_onnx")
            session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
            self._check_session(path, session, expected, inputs)
            self.sessions[kind] = session

    def _config_dict(self, config) -> dict:
        if config is None:
            path = self.folder / "config.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: the ONNX files are checked against the model's config")
            return json.loads(path.read_text(encoding="utf-8"))
        return config if isinstance(config, dict) else config.to_dict()

    def _read_info(self) -> dict:
        path = self.folder / ONNX_SUBFOLDER / INFO_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: export the model with meralign.onnx_export.export_onnx")
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("fingerprint", {}).get("config") != config_fingerprint(self.config):
            raise ValueError(
                f"{path} belongs to another model: its config fingerprint does not match this model's "
                "config.json (re-export the ONNX files from this model)"
            )
        return info

    @staticmethod
    def _check_session(path: Path, session, expected: dict, inputs: tuple) -> None:
        """Refuse a file from another model (fingerprint) or of another signature (input names)."""
        metadata = session.get_modelmeta().custom_metadata_map
        for key, value in expected.items():
            found = metadata.get(key)
            if found != value:
                what = "config" if key == METADATA_CONFIG_KEY else "weights (head and calibration)"
                raise ValueError(
                    f"{path} was exported from another model: its {what} fingerprint "
                    f"{(found or 'missing')[:12]} does not match this model's {value[:12]} (re-export it)"
                )
        names = tuple(i.name for i in session.get_inputs())
        if names != inputs:
            raise ValueError(f"{path} has inputs {names}, expected {inputs}")

    @property
    def calibration(self) -> dict:
        """logit_scale (log of the softmax temperature scale), multilabel_scale and multilabel_bias."""
        return dict(self.info["calibration"])

    def audio_embeddings(self, input_values, attention_mask=None) -> np.ndarray:
        """L2-normalised audio embeddings [batch, projection_size] of 24 kHz waveforms [batch, samples]."""
        values, mask = _with_mask(input_values, np.float32, attention_mask, "input_values", "batch, samples")
        return self.sessions["audio"].run(None, {"input_values": values, "attention_mask": mask})[0]

    def label_embeddings(self, input_ids, attention_mask=None) -> np.ndarray:
        """L2-normalised label vectors [batch, projection_size] of tokenised label texts [batch, tokens]."""
        if "text" not in self.sessions:
            raise ValueError("this MERAlignONNX was opened with text_variant=None: it has no label encoder")
        ids, mask = _with_mask(input_ids, np.int64, attention_mask, "input_ids", "batch, tokens")
        return self.sessions["text"].run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _with_mask(inputs, dtype, attention_mask, name: str, axes: str) -> tuple[np.ndarray, np.ndarray]:
    """`inputs` as a contiguous 2-D array of `dtype`, and its int64 mask (all ones when None), checked."""
    array = np.ascontiguousarray(inputs, dtype=dtype)
    if array.ndim != 2:
        raise ValueError(f"{name} must be [{axes}], got shape {array.shape}")
    mask = np.ones(array.shape, np.int64) if attention_mask is None else np.asarray(attention_mask, np.int64)
    if mask.shape != array.shape:
        raise ValueError(f"attention_mask must have the shape of {name} {array.shape}, got {mask.shape}")
    return array, mask


# ------------------------------------------------------------------------------- the pipeline's backend
class BackendUnsupported(ValueError):
    """The backend's kernels do not exist for this machine (a ValueError: the request cannot be met here).
    Distinct from the other ValueErrors of opening a backend, such as an ONNX file of another model, which a
    caller trying backends in turn must not pass over."""


def check_backend(backend) -> str:
    """A valid `backend=` name of the pipeline, or a ValueError listing the names."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}")
    return backend


def open_backend(backend: str, model) -> MERAlignONNX | None:
    """The ONNX sessions a pipeline runs for `backend` (None for "torch"), from the folder `model` was loaded from.

    The folder is `model.name_or_path`: a local folder, or a Hub id whose onnx/ files are fetched like the
    weights (huggingface_hub's cache). The files are checked against the model's config and head weights.
    """
    variant = BACKENDS[check_backend(backend)]
    if variant is None:
        return None
    if variant != "fp32" and platform.machine().lower() not in INT8_MACHINES:
        raise BackendUnsupported(
            f"backend {backend!r} runs int8 kernels that ONNX Runtime has for {INT8_MACHINES} CPUs only; this "
            f"machine is {platform.machine()!r}: use backend='onnx'"
        )
    folder = _model_folder(getattr(model, "name_or_path", "") or "")
    return MERAlignONNX(folder, config=model.config, audio_variant=variant)


def _model_folder(name_or_path: str) -> Path:
    if not name_or_path:
        raise ValueError(
            "an ONNX backend needs a model loaded from a folder or Hub id that holds onnx/ (export it with "
            "`train.py export`); this model object has no name_or_path"
        )
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_path, allow_patterns=["onnx/*", "*.json", "*.safetensors"]))
