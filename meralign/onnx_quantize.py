"""int8 variants of an exported audio graph, each kept only when it stays accurate.

    export_onnx(model, folder, quantized=True)                       # + onnx/audio_model_quantized.onnx
    export_onnx(model, folder, calibration_audio=[waveform, ...])    # + onnx/audio_model_int8.onnx

- `quantized` (backend "onnx-quantized"): dynamic int8. MatMul weights int8 per channel, activations quantised
  on every call. Needs no data.
- `int8` (backend "onnx-int8"): static int8 in ONNX Runtime's QOperator format. MatMuls and convolutions take
  int8 weights and uint8 activations whose ranges were calibrated (MinMax) on the given audio. Three
  convolutions stay float (`float_convs`): the first, which reads the raw waveform through one input channel,
  and the last two, nearest the transformer (1% of the arithmetic; quantised, they moved a MERT-95M-shaped
  tower's embeddings from cosine 0.9993 to 0.9988 of float32, under the bar).

The accuracy bar: the worst cosine, over CHECK_CLIPS (synthetic music rendered with seeds that none of the
project's calibration sets use) and, for the static model, the segments of the calibration audio it was not
calibrated on, between the variant's embeddings and the float32 graph's must be at least QUANTIZED_MIN_COSINE.
A variant that fails is deleted and the reason recorded in meralign_onnx.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meralign.onnx_export import read_info, record_info, write_info
from onnx_meralign import AUDIO_INPUTS, ONNX_SUBFOLDER, onnx_file_name

# A quantised variant ships only when its embeddings stay this close (cosine, worst clip) to the float32 graph's
QUANTIZED_MIN_COSINE = 0.999
CHECK_CLIPS = (["joyful"], ["sad"], ["angry", "tense"], ["calm"], ["tender", "sad"], ["powerful"])
# ORT's calibrator holds every intermediate tensor of every calibration feed in memory (the first convolutions'
# outputs are ~100 MB per 10 s segment of MERT-95M): this many segments bound it to a few GB.
MAX_CALIBRATION_SEGMENTS = 8
CONV_WEIGHTS = "conv_layers.{}."  # front-end convolution i's weight names contain this
FIRST_CONV = CONV_WEIGHTS.format(0)  # the waveform convolution
DYNAMIC_RECIPE = "quantize_dynamic: int8 MatMul weights, per-channel"
STATIC_RECIPE = (
    "quantize_static QOperator: int8 weights (per channel) and uint8 activations (MinMax over {n} calibration "
    "segments) in MatMul and Conv, the first and last two convolutions float"
)


def add_dynamic_int8(model, folder) -> bool:
    """Write `audio_model_quantized.onnx` next to the float32 graph; True if it passed the accuracy bar."""
    out = Path(folder) / ONNX_SUBFOLDER
    quantize_dynamic_int8(out / onnx_file_name("audio"), out / onnx_file_name("audio", "quantized"), per_channel=True)
    return _keep_if_accurate(model, folder, "quantized", DYNAMIC_RECIPE)


def add_static_int8(model, folder, calibration_audio, max_segments: int = MAX_CALIBRATION_SEGMENTS) -> bool:
    """Write `audio_model_int8.onnx`, calibrated on `calibration_audio`; True if it passed the accuracy bar,
    checked on CHECK_CLIPS and on the segments of `calibration_audio` that calibration did not use."""
    feeds, check = calibration_split(calibration_audio, model.config, max_segments)
    out = Path(folder) / ONNX_SUBFOLDER
    source, target = out / onnx_file_name("audio"), out / onnx_file_name("audio", "int8")
    exclude = nodes_reading(source, float_convs(model.config.audio_config))
    quantize_static_int8(source, target, feeds, quant_format="QOperator", exclude=exclude)
    _carry_metadata(source, target)
    how = STATIC_RECIPE.format(n=len(feeds)) + f"; checked on {len(check)} held-out segments of that audio too"
    return _keep_if_accurate(model, folder, "int8", how, check)


def float_convs(audio_config) -> list[str]:
    """Weight-name prefixes of the front-end convolutions the static int8 model keeps float: the first and the
    last two (see the module docstring)."""
    last = len(audio_config.conv_dim) - 1
    return sorted({CONV_WEIGHTS.format(i) for i in (0, last - 1, last) if i >= 0})


def calibration_split(
    calibration_audio, config, max_segments: int = MAX_CALIBRATION_SEGMENTS
) -> tuple[list[dict], list[np.ndarray]]:
    """(feeds, check segments) from the clips cut into whole segments (the model's segment length; a clip
    shorter than a segment is one segment as it is): at most `max_segments` feeds for calibration, spread
    evenly over all segments, and at most `max_segments` of the others, spread evenly, for the accuracy check."""
    if not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError(f"max_segments must be a positive integer, got {max_segments!r}")
    pieces = _segments(calibration_audio, config)
    chosen = _evenly(len(pieces), max_segments)
    rest = [k for k in range(len(pieces)) if k not in chosen]
    feeds = [dict(zip(AUDIO_INPUTS, (pieces[k][None], np.ones((1, len(pieces[k])), dtype=np.int64)))) for k in chosen]
    return feeds, [pieces[rest[j]] for j in _evenly(len(rest), max_segments)]


def _segments(calibration_audio, config) -> list[np.ndarray]:
    from audio_meralign import receptive_field

    if isinstance(calibration_audio, np.ndarray) or not len(calibration_audio):
        raise ValueError("calibration_audio must be a non-empty list of 1-D float waveforms")
    segment, shortest = int(config.segment_seconds * config.sampling_rate), receptive_field(config.audio_config)
    pieces = []
    for i, clip in enumerate(calibration_audio):
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim != 1 or len(clip) < shortest or not np.isfinite(clip).all():
            raise ValueError(
                f"calibration_audio[{i}] must be a finite 1-D waveform of at least {shortest} samples at "
                f"{config.sampling_rate} Hz, got shape {clip.shape}"
            )
        pieces += [clip[k * segment : (k + 1) * segment] for k in range(max(1, len(clip) // segment))]
    return pieces


def _evenly(n: int, k: int) -> list[int]:
    """At most k of range(n), spread evenly, first and last included."""
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist())) if n else []


def variant_cosine(model, folder, variant: str, check_segments=()) -> float:
    """The worst cosine between the `variant` and the float32 audio graph's embeddings of CHECK_CLIPS (one
    segment of synthetic music each, at the model's segment length) and of `check_segments` (waveforms)."""
    from meralign.data.synthetic.render import render_clip
    from onnx_meralign import MERAlignONNX

    config = model.config
    clips = np.stack(
        [
            render_clip(e, seed=i, seconds=config.segment_seconds, sampling_rate=config.sampling_rate)
            for i, e in enumerate(CHECK_CLIPS)
        ]
    )
    runtimes = [
        MERAlignONNX(folder, config=config, audio_variant=v, text_variant=None, check_weights=False)
        for v in ("fp32", variant)
    ]
    batches = [clips] + [np.asarray(x, dtype=np.float32)[None] for x in check_segments]  # lengths may differ
    return min(
        float(np.min(np.sum(runtimes[0].audio_embeddings(x) * runtimes[1].audio_embeddings(x), axis=1)))
        for x in batches
    )


def _keep_if_accurate(model, folder, variant: str, how: str, check_segments=()) -> bool:
    target = Path(folder) / ONNX_SUBFOLDER / onnx_file_name("audio", variant)
    cosine = variant_cosine(model, folder, variant, check_segments)
    if cosine < QUANTIZED_MIN_COSINE:
        target.unlink()
        record_info(
            folder, "rejected", {f"audio/{variant}": f"cosine to float32 {cosine:.5f} < {QUANTIZED_MIN_COSINE}"}
        )
        return False
    add_variant(folder, "audio", variant, how)
    record_info(folder, "cosine_to_fp32", {f"audio/{variant}": round(cosine, 6)})
    return True


def add_variant(folder, kind: str, variant: str, how: str) -> None:
    """Record a variant written as onnx/<kind>_model<suffix>.onnx (and how it was made) in meralign_onnx.json."""
    info = read_info(folder)
    info["files"].setdefault(kind, {})[variant] = onnx_file_name(kind, variant)
    info.setdefault("variants", {})[f"{kind}/{variant}"] = how
    write_info(folder, info)


def _carry_metadata(source: Path, target: Path) -> None:
    """Copy the float32 file's metadata_props (the model fingerprint) into a quantised file that lacks them."""
    import onnx

    have = onnx.load(str(target), load_external_data=False)
    keys = {p.key for p in have.metadata_props}
    missing = [p for p in onnx.load(str(source), load_external_data=False).metadata_props if p.key not in keys]
    if missing:
        have.metadata_props.extend(missing)
        onnx.save(have, str(target))


# ----------------------------------------------------------------------------------------- the quantisers
class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # pragma: no cover - called by some calibrators only
        pass


def quantize_dynamic_int8(source, target, *, per_channel: bool = False, op_types=("MatMul",)) -> Path:
    """Dynamic int8 (int8 weights, activations quantised per call): the variant that needs no calibration.

    MatMul only by default: ORT's dynamic Conv (ConvInteger) has no fast kernel on x86, so the conv front end
    stays float. The fingerprint in metadata_props is carried over by the quantiser."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(op_types),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
    )
    return Path(target)


def quantize_static_int8(
    source,
    target,
    calibration: list[dict],
    *,
    quant_format: str = "QDQ",
    per_channel: bool = True,
    op_types=("MatMul", "Conv"),
    reduce_range: bool = False,
    exclude=(),
    calibrate_method: str = "MinMax",
) -> Path:
    """Static int8 (activation ranges calibrated on `calibration` feeds, MinMax), in QDQ or QOperator format.

    QuantType: uint8 activations and int8 weights (ORT's fast U8S8 path on AVX2 CPUs). `reduce_range` uses
    7-bit weights, which avoids int16 saturation in the U8S8 kernels of CPUs without VNNI."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    formats = {"QDQ": QuantFormat.QDQ, "QOperator": QuantFormat.QOperator}
    if quant_format not in formats:
        raise ValueError(f"quant_format must be one of {tuple(formats)}, got {quant_format!r}")
    quantize_static(
        str(source),
        str(target),
        _Batches(calibration),
        quant_format=formats[quant_format],
        op_types_to_quantize=list(op_types),
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=getattr(CalibrationMethod, calibrate_method),
    )
    return Path(target)


def nodes_reading(path, weight_substrings) -> list[str]:
    """Names of the nodes of an ONNX file with an input whose name contains one of `weight_substrings`
    (e.g. "conv_layers.0." picks the first conv): what `quantize_static_int8(exclude=...)` takes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if any(s in name for name in node.input for s in weight_substrings)]
