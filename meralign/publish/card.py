"""The model card: metadata the Hub parses (licence, base models, pipeline tag, `model-index`) and a text with
usage, the model, training data, every score beside its chance baseline, figures, limitations and licence.

Built with huggingface_hub's `ModelCard`/`ModelCardData` from the protocol's `SettingRecord`s; never calls
the Hub.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meralign.evaluation.records import SettingRecord, read_settings
from meralign.files import atomic_write_text
from meralign.publish.folder import PACKAGED_TEXT_MODEL_ID, is_hub_id, is_packaged_minilm

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

logger = logging.getLogger(__name__)

TASK_TAG = "zero-shot-music-emotion"
DEFAULT_LICENSE = "cc-by-nc-4.0"  # MERT-v1's weights are CC-BY-NC-4.0; a model built on them inherits it
MERT_LICENSE = "cc-by-nc-4.0"
PAPER_URL = "https://arxiv.org/abs/2410.11522"
LABEL_FIGURE = "label_clusters.png"
CURVES_FIGURE = "training_curves.png"

# Display names of the datasets the project knows; anything else is shown as given.
DATASET_TITLES = {
    "mtg-jamendo": "MTG-Jamendo (mood/theme)",
    "mtg": "MTG-Jamendo (mood/theme)",
    "cal500": "CAL500 (emotion tags)",
    "emotify": "Emotify (GEMS-9)",
    "synthetic": "synthetic demo corpus",
}
LEVEL_TITLES = {"segment": "segment", "song_mean": "song, mean of segments", "song_vote": "song, majority vote"}
# metric key -> (model-index type, display name; "{k}" is the dataset's top-k). Only these go into the card.
CARD_METRICS = {
    "macro_f1": ("f1", "macro F1 at top-{k}"),
    "roc_auc": ("roc_auc", "macro ROC-AUC"),
    "pr_auc": ("pr_auc", "macro PR-AUC"),
}
BASELINE_TITLES = {"random_topk": "random top-{k}", "frequency_prior": "label-frequency prior", "chance": "chance"}


def load_protocol_results(path) -> dict:
    """Read a protocol JSON (`python train.py protocol` writes `protocol.json`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"results file {str(path)!r} does not exist: pass the protocol.json written by `train.py protocol`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(
            f"results file {str(path)!r} must hold a JSON object with 'settings', got {type(data).__name__}"
        )
    return data


# ================================================================================== model description
def _read_config(model_dir_or_config) -> tuple[dict, Path | None]:
    """The model config as a dict (read as JSON: no remote code runs), and the folder when one was given."""
    if isinstance(model_dir_or_config, (str, Path)):
        folder = Path(model_dir_or_config)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ValueError(f"model_dir_or_config {str(folder)!r} has no config.json: pass an exported model folder")
        return json.loads(config_file.read_text(encoding="utf-8")), folder
    if isinstance(model_dir_or_config, dict):
        return dict(model_dir_or_config), None
    if hasattr(model_dir_or_config, "to_dict"):
        return model_dir_or_config.to_dict(), None
    raise TypeError(
        "model_dir_or_config must be a model folder, a config dict or a PretrainedConfig, got "
        f"{type(model_dir_or_config).__name__}"
    )


@dataclass
class Tower:
    role: str  # "audio" or "text"
    hub_id: str | None  # base model id, when known
    description: str


def describe_towers(config: dict) -> list[Tower]:
    """Where each tower's weights came from, as far as the config records it."""
    audio = config.get("audio_name_or_path")
    text = config.get("text_name_or_path")
    towers = []
    if not audio:
        towers.append(Tower("audio", None, "a tiny, randomly initialised MERT-shaped network (no pretrained weights)"))
    elif is_hub_id(audio):
        towers.append(Tower("audio", audio, f"[{audio}](https://huggingface.co/{audio})"))
    else:
        towers.append(Tower("audio", None, f"a local MERT checkpoint (`{Path(audio).name}`)"))
    if text and is_packaged_minilm(text):
        text = PACKAGED_TEXT_MODEL_ID
    if not text:
        towers.append(Tower("text", None, "a sentence-transformer (not recorded in the config)"))
    elif is_hub_id(text):
        towers.append(Tower("text", text, f"[{text}](https://huggingface.co/{text})"))
    else:
        towers.append(Tower("text", None, f"a local sentence-transformer checkpoint (`{Path(text).name}`)"))
    return towers


# ================================================================================== the model card
def _metric_name(metric: str, top_k: int | None, level: str) -> str:
    name = CARD_METRICS[metric][1].format(k=top_k if top_k else "k")
    return f"{name} ({LEVEL_TITLES.get(level, level)})"


def _dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name.lower(), name)


def _dataset_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "dataset"


def eval_results(settings: list[SettingRecord]) -> list:
    """`model-index` entries: one per setting, level and card metric; the setting name is the dataset config."""
    from huggingface_hub import EvalResult

    entries = []
    for s in settings:
        task = (
            "Zero-shot music emotion recognition" if s.kind == "zero-shot" else f"Music emotion recognition ({s.kind})"
        )
        for level, values in s.metrics.items():
            for metric in CARD_METRICS:
                if not _defined(values.get(metric)):
                    continue
                entries.append(
                    EvalResult(
                        task_type="audio-classification",
                        task_name=task,
                        dataset_type=_dataset_slug(s.test),
                        dataset_name=_dataset_title(s.test),
                        dataset_config=s.name,
                        dataset_split="test",
                        metric_type=CARD_METRICS[metric][0],
                        metric_name=_metric_name(metric, s.top_k, level),
                        metric_value=round(values[metric], 4),
                    )
                )
    return entries


def _defined(value) -> bool:
    """A metric the card can show: a finite number (an AUC is undefined, NaN, when a label has no positive)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _baseline_text(setting: SettingRecord, level: str, metric: str) -> str:
    parts = [
        f"{BASELINE_TITLES.get(n, n.replace('_', ' ')).format(k=setting.top_k or 'k')} {v:.3f}"
        for n, v in setting.baselines(level, metric).items()
        if _defined(v)
    ]
    return "; ".join(parts) if parts else "not given"


def _setting_table(s: SettingRecord) -> str:
    """Rows: level x metric, each value beside its chance baselines."""
    lines = ["| level | metric | score | chance |", "|---|---|---|---|"]
    for level, values in s.metrics.items():
        for metric in CARD_METRICS:
            if _defined(values.get(metric)):
                name = CARD_METRICS[metric][1].format(k=s.top_k or "k")
                lines.append(
                    f"| {LEVEL_TITLES.get(level, level)} | {name} | {values[metric]:.3f} | "
                    f"{_baseline_text(s, level, metric)} |"
                )
    return "\n".join(lines)


def _evaluation_section(settings: list[SettingRecord], notes: str | None) -> str:
    if not settings:
        return (
            "## Evaluation\n\nNo evaluation results were given for this model. Scores from "
            "`python train.py protocol` are added here, each beside its chance baseline.\n"
        )
    out = [
        "## Evaluation\n",
        "Leave-one-dataset-out protocol: train on some datasets, test zero-shot on a dataset whose vocabulary "
        "the model never saw (in-domain rows score the training datasets' own test tracks). Every score is "
        "printed beside its chance baseline: in the paper this method follows, two of the three zero-shot "
        "scores were at or below chance.\n",
        "| setting | kind | k | macro F1 (segment) | chance: random top-k | chance: label-frequency prior |",
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        f1 = s.metrics.get("segment", {}).get("macro_f1")
        base = dict(s.baselines("segment", "macro_f1"))
        cells = [
            f"{v:.3f}" if v is not None else "n/a" for v in (f1, base.get("random_topk"), base.get("frequency_prior"))
        ]
        out.append(f"| {s.name} | {s.kind} | {s.top_k or 'n/a'} | " + " | ".join(cells) + " |")
    for s in settings:
        trained = " + ".join(_dataset_title(t) for t in s.train) or "unspecified"
        out.append(f"\n### {s.name}\n\nTrained on {trained}; tested on {_dataset_title(s.test)} ({s.kind}).\n")
        out.append(_setting_table(s))
    if notes:
        out.append(f"\n{notes.strip()}\n")
    return "\n".join(out) + "\n"


def _model_section(config: dict, towers: list[Tower]) -> str:
    audio, text = towers
    layers = ", ".join(str(i) for i in config.get("feature_layers", [])) or "?"
    lines = [
        "## Model\n",
        f"- Audio tower: {audio.description}, run as transformers' native `HubertModel` "
        f"({config.get('sampling_rate', 24000)} Hz input, {config.get('segment_seconds', 10.0):g} s segments).",
        f"- Text tower: {text.description}, mean pooling and L2 normalisation as in sentence-transformers.",
        f"- Head: `{config.get('head_type', 'mlp')}` over hidden states {layers}, pooled with "
        f"`{config.get('pooling', 'mean')}` over time, projected into the text embedding space.",
        "- Scores: cosine similarity scaled by a learned temperature, softmax over the candidate labels; with "
        "`multi_label=True`, an independent calibrated sigmoid per label. A recording's score is the mean of its "
        'segments\' scores (or a majority vote with `aggregation="vote"`).',
    ]
    if audio.hub_id is None and "random" in audio.description:
        lines.append(
            "\n> **This model's audio tower is random.** It was built to test the pipeline and the "
            "publishing path offline; its predictions carry no information about the music, and no "
            "number measured with it says anything about what MERT weights would reach."
        )
    return "\n".join(lines) + "\n"


def _usage_section(repo_id: str) -> str:
    return f"""## Usage

```python
from transformers import pipeline

clf = pipeline("{TASK_TAG}", model="{repo_id}", trust_remote_code=True)
clf("song.ogg", candidate_labels=["joyful", "melancholic", "tense", "serene"])
# [{{"label": "melancholic", "score": 0.61}}, ...]

# independent per-label scores, the 3 best, and an emotion timeline (one entry per 10 s segment)
out = clf("song.ogg", candidate_labels=["joyful", "melancholic", "tense", "serene"],
          multi_label=True, top_k=3, return_segments=True)
out["labels"], out["scores"], out["segments"][0]["scores"]

# ONNX Runtime instead of PyTorch (pip install onnxruntime): the files under onnx/, float32 or int8
fast = pipeline("{TASK_TAG}", model="{repo_id}", trust_remote_code=True, backend="onnx")
```

`trust_remote_code=True` runs this repository's `*_meralign.py` files (configuration, model, pipeline, processor,
audio input, scoring rules, CPU rewrites, the ONNX backend); they need only torch, transformers, numpy,
soundfile and scipy, and onnxruntime for `backend="onnx"` (no ffmpeg: soundfile decodes wav, flac, ogg/vorbis,
opus, mp3 and aiff). Read them before running them. Any words can be candidate labels; the whole recording is
scored segment by segment. A model saved with affect axes also gives valence and arousal
(`return_affect=True`).
"""


def _training_section(config: dict, settings: list[SettingRecord], training_data: str | None) -> str:
    if training_data:
        return f"## Training data\n\n{training_data.strip()}\n"
    names = [str(n) for n in config.get("train_datasets") or []]
    listed = ", ".join(_dataset_title(n) for n in names) if names else "not recorded in the model config"
    protocol = (
        " The evaluation below follows the same recipe, one head per setting, each trained on the "
        "setting's training datasets only."
        if settings
        else ""
    )
    return (
        "## Training data\n\n"
        f"This model's projection head was trained on: {listed}. Each dataset's emotion labels are embedded with the "
        "text "
        "tower and aligned across vocabularies by Mean Shift clustering; the head is trained with a cosine "
        "triplet loss and an alignment regulariser. Splits are by track, never by segment, and model selection "
        f"uses only the training datasets' validation splits.{protocol}\n"
    )


def _figures_section(folder: Path | None) -> str:
    if folder is None:
        return ""
    parts = []
    if (folder / LABEL_FIGURE).is_file():
        parts.append(
            "## Label alignment\n\nEmotion labels of the training vocabularies in the text embedding space, "
            f"coloured by their Mean Shift cluster:\n\n![label clusters]({LABEL_FIGURE})\n"
        )
    if (folder / CURVES_FIGURE).is_file():
        parts.append(f"## Training curves\n\n![training curves]({CURVES_FIGURE})\n")
    return "\n".join(parts)


def _license_section(license: str, towers: list[Tower]) -> str:
    audio, text = towers
    text_note = " all-MiniLM-L6-v2 is released under Apache-2.0." if text.hub_id == PACKAGED_TEXT_MODEL_ID else ""
    if audio.hub_id is None and "random" in audio.description:
        mert = (
            f"This model holds no MERT weights (its audio tower is random); the card keeps `{license}`, the "
            "licence any model trained on MERT-v1 features inherits."
        )
    else:
        mert = (
            "MERT-v1's weights (m-a-p) are released under CC-BY-NC-4.0, and a model built on them inherits "
            "it: **non-commercial use only**."
        )
    return f"## License\n\n`{license}`. {mert}{text_note}\n"


LIMITATIONS = """## Limitations

- Zero-shot transfer between emotion vocabularies is weak: compare every score with its chance baseline above
  before relying on it. Emotion in music is subjective, and the training tags come from a few annotator pools.
- The training datasets are mostly Western popular and production music; other traditions are out of domain.
- The text tower is English-only: labels in other languages are embedded poorly.
- Scores are relative to the candidate labels given (softmax); with `multi_label=True` they are calibrated on the
  training datasets' validation data only.
- Audio is scored in 10 s segments: emotion changes faster than that are averaged away.
"""


def build_model_card(
    model_dir_or_config,
    results: dict | None = None,
    *,
    repo_id: str,
    base_models: list[str] | None = None,
    license: str = DEFAULT_LICENSE,
    dataset_names: list[str] | None = None,
    training_data: str | None = None,
    language: str = "en",
) -> ModelCard:
    """The model card: metadata (pipeline tag, tags, base models, license, datasets, `model-index` from the
    protocol results) and a text with usage, training data, every score beside its chance baseline, the
    label-alignment figure when the folder has one, limitations and the licence. Never calls the Hub."""
    from huggingface_hub import ModelCard, ModelCardData

    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a non-empty Hub id like 'org/meralign-mert-95m', got {repo_id!r}")
    if not isinstance(license, str) or not license:
        raise ValueError(f"license must be a licence identifier such as {DEFAULT_LICENSE!r}, got {license!r}")
    config, folder = _read_config(model_dir_or_config)
    towers = describe_towers(config)
    if base_models is None:
        base_models = [t.hub_id for t in towers if t.hub_id]
    if towers[0].hub_id and license != MERT_LICENSE:
        logger.warning(
            "license %r: MERT-v1 weights are %s and a model built on them inherits it", license, MERT_LICENSE
        )
    settings = read_settings(results) if results is not None else []
    data = ModelCardData(
        model_name=repo_id,
        license=license,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=[TASK_TAG, "music", "emotion-recognition", "zero-shot-classification", "mert", "audio"],
        base_model=list(base_models) or None,
        datasets=list(dataset_names) if dataset_names else None,
        language=language,
        eval_results=eval_results(settings) or None,
    )
    notes = results.get("notes") if isinstance(results, dict) and isinstance(results.get("notes"), str) else None
    body = "\n".join(
        part
        for part in [
            f"# {repo_id.split('/')[-1]}\n",
            "Zero-shot music emotion recognition: give a recording and any emotion words, get a score per word. "
            "MERAlign maps MERT audio features into the embedding space of a sentence-transformer, where emotion "
            "words from different datasets live side by side, so a model trained on some vocabularies scores words "
            f"it never saw. Method: [Leveraging LLM Embeddings for Cross Dataset Label Alignment and Zero Shot Music "
            f"Emotion Prediction]({PAPER_URL}).\n",
            _usage_section(repo_id),
            _model_section(config, towers),
            _training_section(config, settings, training_data),
            _evaluation_section(settings, notes),
            _figures_section(folder),
            LIMITATIONS,
            _license_section(license, towers),
        ]
        if part
    )
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body)


def write_model_card(folder, results: dict | None = None, *, repo_id: str, **kwargs) -> Path:
    """Build the card for an exported model folder and write it as the folder's README.md (atomically)."""
    card = build_model_card(folder, results, repo_id=repo_id, **kwargs)
    path = Path(folder) / "README.md"
    atomic_write_text(path, str(card))
    return path
