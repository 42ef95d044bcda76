"""Export: the base model (towers) + a trained head + its calibration -> a Hub-ready model folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from configuration_meralign import MERAlignConfig
from meralign.arguments import parse_args
from meralign.head import CALIBRATION_FIELDS, HEAD_FIELDS, load_head
from meralign.towers import load_base_model
from modeling_meralign import MERAlignModel

# calibration reads at most this many files: the quantiser keeps MAX_CALIBRATION_SEGMENTS segments of them anyway
MAX_CALIBRATION_FILES = 32


@dataclass
class ExportArguments:
    """Assemble and save a model loadable with `pipeline("zero-shot-music-emotion", ...)`."""

    head_dir: str = field(metadata={"help": "Output folder of `train.py fit` (or one held-out run of `protocol`)."})
    output_dir: str = field(metadata={"help": "Where the Hub-ready model folder is written."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "A saved MERAlign folder whose towers were used for extraction (e.g. the demo's base model)."
        },
    )
    mert: str | None = field(
        default=None, metadata={"help": "Instead of --base_model: a MERT-v1 checkpoint (folder or Hub id)."}
    )
    text: str | None = field(
        default=None,
        metadata={
            "help": "With --mert: the sentence-transformers checkpoint (default: the packaged all-MiniLM-L6-v2)."
        },
    )
    alignment_dir: str | None = field(
        default=None,
        metadata={
            "help": "Output folder of `train.py align`: its figure and cluster map go into the model folder (and its "
            "card)."
        },
    )
    results: str | None = field(
        default=None,
        metadata={
            "help": "protocol.json of `train.py protocol`: the model card reports it, each score beside its chance "
            "baseline."
        },
    )
    repo_id: str = field(
        default="your-org/meralign",
        metadata={"help": "The Hub id the model card names (the push can still go elsewhere)."},
    )
    onnx: bool = field(
        default=True,
        metadata={
            "help": "Also write onnx/audio_model.onnx, onnx/text_model.onnx and, where it stays within cosine "
            "0.999 of float32, onnx/audio_model_quantized.onnx (the pipeline's backend='onnx' and the web page)."
        },
    )
    calibration_audio: list[str] | None = field(
        default=None,
        metadata={
            "help": "Audio files or folders (training audio, not what you evaluate on) to calibrate "
            "onnx/audio_model_int8.onnx, the static int8 audio model (backend='onnx-int8'); it ships where it stays "
            "within cosine 0.999 of float32. Without it, no static int8 model is written."
        },
    )


def load_base(base_model: str | None = None, mert: str | None = None, text: str | None = None) -> MERAlignModel:
    """The towers the features were extracted with."""
    return load_base_model(base_model, mert, text, model_flag="--base_model")


def assemble(base: MERAlignModel, head_dir) -> MERAlignModel:
    """A full model: the base towers, the trained head, the learned temperature and calibration."""
    head, saved = load_head(head_dir)
    if saved["audio_hidden_size"] != base.config.audio_config.hidden_size:
        raise ValueError(
            f"the head was trained on {saved['audio_hidden_size']}-d features but the base tower is "
            f"{base.config.audio_config.hidden_size}-d: export with the tower the cache was extracted with"
        )
    fields = base.config.to_dict()
    fields.update({k: saved[k] for k in HEAD_FIELDS})
    fields.update({k: saved[k] for k in CALIBRATION_FIELDS if k in saved and k != "logit_scale"})
    for key in ("model_type", "transformers_version", "auto_map", "architectures"):
        fields.pop(key, None)
    config = MERAlignConfig(**fields)
    config.train_datasets = saved.get("train_datasets", [])
    model = MERAlignModel(config)
    model.audio_model.load_state_dict(base.audio_model.state_dict())
    model.text_model.load_state_dict(base.text_model.state_dict())
    model.audio_head.load_state_dict(head.state_dict())
    with torch.no_grad():
        model.logit_scale.fill_(float(saved.get("logit_scale", base.config.logit_scale_init_value)))
    return model.eval()


def export_model(
    head_dir,
    output_dir,
    *,
    base_model=None,
    mert=None,
    text=None,
    alignment_dir=None,
    results=None,
    repo_id: str = "your-org/meralign",
    onnx: bool = True,
    calibration_audio=None,
) -> Path:
    """Write the Hub-ready folder: model + remote code + processors, the ONNX files (unless `onnx=False`; the
    static int8 audio model too when `calibration_audio`, audio files or folders, is given), figures, and a
    model card."""
    from meralign.publish.card import load_protocol_results, write_model_card
    from meralign.publish.folder import save_model_folder

    base = load_base(base_model, mert, text)
    model = assemble(base, head_dir)
    # the tokenizer comes from the base folder when there is one (it holds the tokenizer files)
    folder = save_model_folder(
        model, output_dir, base_model or text or getattr(base.config, "text_name_or_path", None)
    )
    if onnx:
        from meralign.onnx_export import export_onnx

        waveforms = calibration_waveforms(calibration_audio, model.config) if calibration_audio else None
        export_onnx(model, folder, quantized=True, calibration_audio=waveforms)
    extras = [Path(head_dir) / "training_curves.png"]
    if alignment_dir:
        extras += [
            Path(alignment_dir) / name for name in ("label_clusters.png", "label_clusters.json", "label_clusters.md")
        ]
    for path in extras:
        if path.is_file():
            shutil.copyfile(path, folder / path.name)
    write_model_card(folder, load_protocol_results(results) if results else None, repo_id=repo_id)
    return folder


def calibration_waveforms(paths, config, max_files: int = MAX_CALIBRATION_FILES) -> list:
    """The first `max_files` audio files under `paths` (files or folders), decoded at the model's rate."""
    from audio_meralign import load_audio
    from meralign.library.sources import check_paths, find_audio

    files, _ = find_audio(check_paths(paths, "--calibration_audio"))
    if not files:
        raise ValueError(f"--calibration_audio: no audio files under {[str(p) for p in paths]}")
    return [load_audio(f.path, config.sampling_rate) for f in files[:max_files]]


def export_main(argv: list[str] | None = None) -> int:
    (args,) = parse_args(ExportArguments, argv)
    folder = export_model(
        args.head_dir,
        args.output_dir,
        base_model=args.base_model,
        mert=args.mert,
        text=args.text,
        alignment_dir=args.alignment_dir,
        results=args.results,
        repo_id=args.repo_id,
        onnx=args.onnx,
        calibration_audio=args.calibration_audio,
    )
    print(json.dumps({"exported": str(folder)}))
    return 0
