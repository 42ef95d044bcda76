"""A trained projection head on disk: its weights, the fields it was trained with, and its calibration.

`HEAD_FIELDS` is the one list of what a head carries into an exported model's config; `train.py fit` writes
it (`save_head`), `train.py export` and evaluation read it (`load_head`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from configuration_meralign import HEAD_ARGUMENTS
from meralign.files import atomic_write_bytes, atomic_write_json
from modeling_meralign import MERAlignHead

HEAD_FILE = "head.safetensors"
HEAD_CONFIG_FILE = "head_config.json"
# The model config fields a head was trained with: which cached layers and pooling it reads, how labels became
# vectors (a template, or the label space it was trained into), and its sizes.
HEAD_FIELDS = ("feature_layers", "pooling", "hypothesis_template", "label_space", *HEAD_ARGUMENTS)
# Fitted on the training datasets' validation data after training (meralign.training.calibration).
CALIBRATION_FIELDS = ("logit_scale", "multilabel_scale", "multilabel_bias", "affect_calibration")


def head_fields(args, feature_layers, label_space: dict | None, **overrides) -> dict:
    """The HEAD_FIELDS of a training run: each is the `train.py fit` flag of the same name (`args`), except the
    layers, which the feature cache decides, and the label space, resolved from its flag to the space itself."""
    fields = {name: getattr(args, name) for name in HEAD_FIELDS if name not in ("feature_layers", "label_space")}
    fields.update(feature_layers=list(feature_layers), label_space=label_space, **overrides)
    return fields


def build_head(fields: dict, hidden_size: int, projection_size: int) -> MERAlignHead:
    """A new (randomly initialised) head for `fields` (HEAD_FIELDS) over features `hidden_size` wide."""
    missing = [name for name in HEAD_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"fields lacks {missing}: a head needs every one of {HEAD_FIELDS}")
    arguments = {name: fields[name] for name in HEAD_ARGUMENTS}
    return MERAlignHead(len(fields["feature_layers"]), int(hidden_size), int(projection_size), **arguments)


def save_head(head: torch.nn.Module, fields: dict, sizes: tuple[int, int], output_dir, extra: dict) -> None:
    """The trained head: weights (safetensors), its fields and `sizes` (audio hidden size, projection size),
    written atomically (a failed write keeps the old head)."""
    from safetensors.torch import save

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = save({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    atomic_write_bytes(output_dir / HEAD_FILE, weights)  # a head is a few MB: serialised in memory
    saved = {name: fields[name] for name in HEAD_FIELDS}
    hidden_size, projection_size = sizes
    atomic_write_json(
        output_dir / HEAD_CONFIG_FILE,
        {**saved, "audio_hidden_size": int(hidden_size), "projection_size": int(projection_size), **extra},
    )


def load_head(head_dir) -> tuple[MERAlignHead, dict]:
    """A trained head (eval mode) and its saved fields (HEAD_FIELDS, calibration, training summary)."""
    from safetensors.torch import load_file

    head_dir = Path(head_dir)
    if not (head_dir / HEAD_FILE).is_file():
        raise ValueError(f"head_dir {str(head_dir)!r} has no {HEAD_FILE}: run `train.py fit` first")
    saved = json.loads((head_dir / HEAD_CONFIG_FILE).read_text(encoding="utf-8"))
    head = build_head(saved, saved["audio_hidden_size"], saved["projection_size"])
    head.load_state_dict(load_file(str(head_dir / HEAD_FILE)))
    return head.eval(), saved
