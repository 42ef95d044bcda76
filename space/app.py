"""Gradio Space: score a music clip against any emotion words with a MERAlign model.

It runs `pipeline("zero-shot-music-emotion", model=MODEL_ID, trust_remote_code=True)` and needs only the
packages in requirements.txt (gradio itself comes from the Space's `sdk_version`): a Space has no access to
the training code, so the label presets ship in `space_config.json`. The "Search a library" tab keeps the
example clips' segment vectors in LanceDB.

Settings (environment variables): MODEL_ID (a Hub id or a local model folder; else `model_id` in
space_config.json), MAX_UPLOAD_MB (default 20), MAX_AUDIO_SECONDS (default 300).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import soundfile as sf
import torch

import library_search  # space/library_search.py, beside this file (a Space runs app.py as a script)
from page_inputs import (  # space/page_inputs.py: the labels and audio checks, before the model sees them
    LABEL_RULE,
    MAX_LABEL_CHARS,
    MAX_TOP_K,
    check_audio,
    parse_labels,
    top_k_of,
)

logger = logging.getLogger("meralign_space")
# The pipeline backends the Space tries, in the order it prefers them when they time the same (the int8 files ship
# only when they passed the exporter's accuracy bar); which is fastest depends on the CPU, so it times them
BACKENDS_TRIED = ("onnx-int8", "onnx-quantized", "onnx", "torch")

HERE = Path(__file__).resolve().parent
CONFIG_FILE = HERE / "space_config.json"
TASK = "zero-shot-music-emotion"
DEFAULT_LABELS = ("joyful", "melancholic", "tense", "serene", "energetic")
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_SECONDS = 300.0  # a CPU Space scores MERT-95M at about 1.6 s per 10 s segment
PRESET_TITLES = {"mtg-jamendo": "MTG-Jamendo mood/theme", "cal500": "CAL500 emotions", "emotify": "Emotify (GEMS-9)"}
GENERIC_ERROR = "Something went wrong while scoring this clip. The error has been logged; please try another file."


@dataclass(frozen=True)
class Settings:
    model_id: str
    max_upload_bytes: int
    max_seconds: float


_settings: Settings | None = None
_pipelines: dict[str, object] = {}
_pipeline_lock = threading.Lock()


# ------------------------------------------------------------------------------------------ configuration
def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a positive number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"environment variable {name} must be a positive number, got {raw!r}")
    return value


def read_space_config(path: Path = CONFIG_FILE) -> dict:
    """space_config.json: {"model_id": ..., "presets": {name: {"labels": [...], "top_k": k}}}; {} when absent."""
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path.name} must hold a JSON object, got {type(config).__name__}")
    return config


def load_presets(config: dict | None = None) -> dict[str, dict]:
    """Label presets (the built-in vocabularies), checked so a broken config fails at startup, not on click."""
    presets = (read_space_config() if config is None else config).get("presets") or {}
    for name, preset in presets.items():
        labels, top_k = preset.get("labels"), preset.get("top_k", 1)
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ValueError(f"preset {name!r} in {CONFIG_FILE.name} needs a non-empty list of labels")
        if not isinstance(top_k, int) or not 1 <= top_k <= len(labels):
            raise ValueError(f"preset {name!r} in {CONFIG_FILE.name} has top_k {top_k!r}; expected 1..{len(labels)}")
    return presets


def resolve_settings(
    model_id: str | None = None, max_seconds: float | None = None, max_upload_mb: float | None = None
) -> Settings:
    """Explicit arguments, else environment variables, else space_config.json and the defaults."""
    model_id = model_id or os.environ.get("MODEL_ID") or read_space_config().get("model_id")
    if not model_id:
        raise ValueError(
            "no model to run: set the MODEL_ID variable (a Hub id or a model folder) "
            f"or model_id in {CONFIG_FILE.name}"
        )
    max_seconds = max_seconds if max_seconds is not None else _env_number("MAX_AUDIO_SECONDS", DEFAULT_MAX_SECONDS)
    max_upload_mb = max_upload_mb if max_upload_mb is not None else _env_number("MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)
    if not max_seconds > 0 or not max_upload_mb > 0:
        raise ValueError(f"max_seconds and max_upload_mb must be positive, got {max_seconds!r} and {max_upload_mb!r}")
    return Settings(str(model_id), int(max_upload_mb * 1024 * 1024), float(max_seconds))


def current_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = resolve_settings()
    return _settings


def launch_options() -> dict:
    """Arguments for `demo.launch`: Gradio itself refuses uploads over the size limit."""
    return {"max_file_size": current_settings().max_upload_bytes}


def get_pipeline(model_id: str):
    """The pipeline for `model_id`, loaded once (on first use, so the Space starts fast), on the fastest backend
    the model folder offers on this machine (see load_fastest_pipeline)."""
    with _pipeline_lock:
        if model_id not in _pipelines:
            _pipelines[model_id] = load_fastest_pipeline(model_id)
        return _pipelines[model_id]


def load_fastest_pipeline(model_id: str, backends=BACKENDS_TRIED, timer=time.perf_counter):
    """The pipeline of `model_id` (loaded once) on the fastest of `backends` that opens here.

    Each backend that opens is timed (a model without ONNX files, or a machine without onnxruntime, has only
    "torch"; a CPU without int8 kernels has no int8 backend) on one segment of noise, best of two runs after a
    warm-up: int8 is 2x faster than float32 on a CPU with VNNI and can be slower on one without, so the order
    alone cannot decide. Ties keep the earlier backend.
    """
    from transformers import pipeline

    pipe = pipeline(TASK, model=model_id, trust_remote_code=True)
    seconds = {}
    for backend in backends:
        try:
            pipe.use_backend(backend)
        except pipe.UNAVAILABLE_BACKEND_ERRORS as err:
            logger.info("backend %s unavailable for %s: %s", backend, model_id, err)
            continue
        seconds[backend] = _probe_seconds(pipe, timer)
    if not seconds:
        raise RuntimeError(f"no backend of {backends} could load {model_id}")
    fastest = min(seconds, key=seconds.get)
    pipe.use_backend(fastest)
    logger.info("loaded %s on backend %s (probe seconds: %s)", model_id, fastest, seconds)
    return pipe


def _probe_seconds(pipe, timer) -> float:
    """The audio encoder's best time on one segment of quiet noise (the tower, bypassing the audio cache)."""
    config = pipe.model.config
    samples = int(config.segment_seconds * config.sampling_rate)
    values = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(0))
    valid = torch.tensor([samples])
    pipe.encode_segments(values, valid)  # warm-up: ORT plans its memory on the first run
    times = []
    for _ in range(2):
        start = timer()
        pipe.encode_segments(values, valid)
        times.append(timer() - start)
    return min(times)


# ------------------------------------------------------------------------------------------ outputs
def timeline_frame(result: dict, labels: list[str]) -> pd.DataFrame:
    """Per-segment scores of `labels` as steps (each segment's score held from its start to its end)."""
    rows = [
        {"seconds": t, "score": segment["scores"][label], "label": label}
        for label in labels
        for segment in result["segments"]
        for t in (segment["start"], segment["end"])
    ]
    return pd.DataFrame(rows, columns=["seconds", "score", "label"])


AFFECT_COLUMNS = ["valence", "arousal", "segment"]


def affect_frame(result: dict) -> pd.DataFrame:
    """Valence and arousal of each segment (empty for a model saved without affect axes)."""
    rows = [
        {"valence": s["valence"], "arousal": s["arousal"], "segment": f"{s['start']:.0f}-{s['end']:.0f} s"}
        for s in result["segments"]
        if "valence" in s
    ]
    return pd.DataFrame(rows, columns=AFFECT_COLUMNS)


def classify(audio_path, labels_text, multi_label, top_k):
    """Score a clip: ({label: score} of the top-k labels, a DataFrame of their scores over time, a DataFrame of
    each segment's valence and arousal).

    Bad input raises gr.Error with a message for the user; the pipeline's ValueError/TypeError messages are
    shown as they are; anything else is logged and reported with a generic message (no stack trace)."""
    settings = current_settings()
    check_audio(audio_path, settings.max_upload_bytes, settings.max_seconds)
    labels = parse_labels(labels_text)
    k = top_k_of(top_k, len(labels))
    try:
        pipe = get_pipeline(settings.model_id)
        result = pipe(
            os.fspath(audio_path),
            candidate_labels=labels,
            multi_label=bool(multi_label),
            top_k=k,
            return_segments=True,
            return_affect=pipe.has_affect,
        )
    except (ValueError, TypeError) as err:
        raise gr.Error(str(err), print_exception=False) from None
    except Exception:
        logger.exception("scoring failed")
        raise gr.Error(GENERIC_ERROR, print_exception=False) from None
    scores = {label: float(score) for label, score in zip(result["labels"], result["scores"], strict=True)}
    return scores, timeline_frame(result, list(result["labels"])), affect_frame(result)


# ------------------------------------------------------------------------------------------ uploads
# Uploaded files live in Gradio's cache. They are deleted when the last session that used them ends, not right
# after scoring, so a user can change the labels and submit the same upload again. `delete_cache` on the Blocks
# is the backstop for sessions that never end cleanly (API clients).
_uploads: dict[str, set[str]] = {}
_uploads_lock = threading.Lock()
_protected_names: set[str] = set()  # example clips: shared by everyone, never deleted


def _in_upload_folder(path: str) -> bool:
    folder = os.path.realpath(gr.utils.get_upload_folder())
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def _track_upload(path, session: str | None) -> None:
    if session is None or not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return
    path = os.fspath(path)
    if os.path.basename(path) in _protected_names or not _in_upload_folder(path):
        return
    with _uploads_lock:
        _uploads.setdefault(path, set()).add(session)


def release_session(request: gr.Request) -> None:
    """On unload: delete the session's uploads that no other session still uses."""
    session = getattr(request, "session_hash", None)
    with _uploads_lock:
        done = [p for p, sessions in _uploads.items() if session in sessions and len(sessions) == 1]
        for sessions in _uploads.values():
            sessions.discard(session)
        for path in done:
            del _uploads[path]
    for path in done:
        try:
            os.remove(path)
            os.rmdir(os.path.dirname(path))  # Gradio's per-file hash folder, when empty
        except OSError:
            pass


def _classify_event(audio_path, labels_text, multi_label, top_k, request: gr.Request):
    _track_upload(audio_path, getattr(request, "session_hash", None))
    return classify(audio_path, labels_text, multi_label, top_k)


# ------------------------------------------------------------------------------------------ examples
def _tone(freqs, seconds: float, sr: int, attack: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) for f in freqs)
    envelope = np.minimum(1.0, t / attack) * np.exp(-1.5 * t / seconds)
    return wave * envelope


def make_example_clips(folder: Path, sr: int = 22050) -> list[Path]:
    """Two short synthetic clips (no audio ships with the Space): a fast major arpeggio, a slow minor swell."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = [261.63, 329.63, 392.0, 523.25]  # C major
    bright = np.concatenate([_tone([notes[i % 4] * 2], 0.125, sr, 0.005) for i in range(48)])
    dark = _tone([110.0, 130.81, 164.81], 6.0, sr, 2.0)  # A minor, low and slow
    clips = {"bright_major_arpeggio.wav": bright, "slow_minor_swell.wav": dark}
    paths = []
    for name, wave in clips.items():
        path = folder / name
        sf.write(path, (0.8 * wave / np.abs(wave).max()).astype(np.float32), sr, subtype="PCM_16")
        _protected_names.add(name)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------ library search
# Built on the first search (not at startup: that needs the model), once per model and set of clips.
_library: dict[tuple, object] = {}  # (model id, clips...) -> LanceDB table
_library_lock = threading.Lock()


def example_library(clips: list[Path], model_id: str):
    key = (model_id, *map(str, clips))
    with _library_lock:
        if key not in _library:
            _library[key] = library_search.build_table(get_pipeline(model_id), clips)
        return _library[key]


def search_clips(words, clips: list[Path]) -> list[dict]:
    """The clips ranked by their best moment's cosine to `words`: [{"clip", "start", "end", "cosine"}]."""
    if not isinstance(words, str) or not words.strip():
        raise gr.Error("Type what to search for, e.g. 'melancholic but hopeful'.", print_exception=False)
    if len(words) > MAX_LABEL_CHARS:
        raise gr.Error(f"The search words are limited to {MAX_LABEL_CHARS} characters.", print_exception=False)
    settings = current_settings()
    try:
        table = example_library(clips, settings.model_id)
        return library_search.rank_clips(
            table, library_search.query_vector(get_pipeline(settings.model_id), words.strip())
        )
    except (ValueError, TypeError) as err:
        raise gr.Error(str(err), print_exception=False) from None
    except Exception:
        logger.exception("library search failed")
        raise gr.Error(GENERIC_ERROR, print_exception=False) from None


def search_outputs(results: list[dict], n_players: int) -> tuple:
    """A ranked table, then one audio player per clip (best first) labelled with its best moment."""
    players = [
        gr.update(value=r["clip"], label=library_search.player_label(i, r))
        for i, r in enumerate(results[:n_players], 1)
    ]
    return (library_search.results_frame(results), *players, *[gr.update(value=None)] * (n_players - len(players)))


# ------------------------------------------------------------------------------------------ the page
def _model_link(model_id: str) -> str:
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model_id) and not os.path.exists(model_id):
        return f"[{model_id}](https://huggingface.co/{model_id})"
    return f"`{Path(model_id).name}` (a local folder)"


def _preset_choices(presets: dict) -> list[tuple[str, str]]:
    return [
        (f"{PRESET_TITLES.get(name, name)} ({len(p['labels'])} labels, top-{p.get('top_k', 1)})", name)
        for name, p in presets.items()
    ]


def _scoring_tab(presets: dict, examples: list[Path]) -> tuple:
    """The first tab: a clip and labels in, scores and their course over time out."""
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Music clip", elem_id="audio-input"
            )
            preset = gr.Dropdown(
                choices=_preset_choices(presets),
                value=None,
                label="Label preset",
                info="Fill the labels with a dataset's vocabulary",
                visible=bool(presets),
                elem_id="preset",
            )
            labels = gr.Textbox(
                value="\n".join(DEFAULT_LABELS),
                lines=6,
                max_lines=20,
                label="Candidate labels",
                info=LABEL_RULE,
                elem_id="labels-input",
            )
            with gr.Row():
                multi = gr.Checkbox(value=False, label="Multi-label", info="Independent score per label")
                top_k = gr.Slider(1, MAX_TOP_K, value=3, step=1, label="Top-k")
            submit = gr.Button("Submit", variant="primary", elem_id="submit")
        with gr.Column():
            label_out = gr.Label(label="Emotions", elem_id="emotions")
            plot_out = gr.LinePlot(
                x="seconds",
                y="score",
                color="label",
                x_title="time (s)",
                y_title="score",
                y_lim=[0, 1],
                label="Emotion over time",
                elem_id="timeline",
            )
            affect_out = gr.ScatterPlot(
                x="valence",
                y="arousal",
                color="segment",
                x_title="valence (unpleasant - pleasant)",
                y_title="arousal (calm - energetic)",
                label="Valence and arousal of each segment (models saved with affect axes)",
                elem_id="affect",
            )
    gr.Examples(
        [
            [str(examples[0]), "joyful\nmelancholic\ntense\nserene", False, 2],
            [
                str(examples[1]),
                "\n".join(presets["emotify"]["labels"]) if "emotify" in presets else "sadness\ncalmness\ntension",
                True,
                3,
            ],
        ],
        inputs=[audio, labels, multi, top_k],
        label="Examples (synthetic clips)",
    )

    return audio, labels, multi, top_k, submit, (label_out, plot_out, affect_out), preset


def _search_tab(examples: list[Path]) -> None:
    """The second tab: words in, the example clips ranked by their best moment out, each with a player."""
    gr.Markdown(
        "Search the example clips as a music library: each clip's segments were embedded once, and any words "
        "rank the clips by the moment that matches them best (like `meralign search` over your own folder)."
    )
    with gr.Row():
        words = gr.Textbox(value="melancholic but hopeful", label="Search words", scale=4, elem_id="search-words")
        search = gr.Button("Search", variant="primary", scale=1, elem_id="search")
    results = gr.Dataframe(label="Clips, best first", interactive=False, elem_id="search-results")
    players = [gr.Audio(type="filepath", interactive=False, label=f"Result {i + 1}") for i in range(len(examples))]
    search.click(
        lambda text: search_outputs(search_clips(text, examples), len(players)),
        inputs=words,
        outputs=[results, *players],
        api_name="search_library",
    )


def build_demo(
    model_id: str | None = None, *, max_seconds: float | None = None, max_upload_mb: float | None = None
) -> gr.Blocks:
    """The Space's page. Settings are fixed here; the model is loaded on the first request."""
    global _settings
    _settings = resolve_settings(model_id, max_seconds, max_upload_mb)
    presets = load_presets()
    examples = make_example_clips(Path(tempfile.mkdtemp(prefix="meralign-space-examples-")))
    with gr.Blocks(title="MERAlign: zero-shot music emotion", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# Zero-shot music emotion recognition\n"
            "Upload or record a clip, type any emotion words, and get a score per word and their course over time. "
            f"Model: {_model_link(_settings.model_id)}. Limits: {_settings.max_upload_bytes / 2**20:.0f} MB, "
            f"{_settings.max_seconds:.0f} s."
        )
        with gr.Tab("Score a clip"):
            audio, labels, multi, top_k, submit, outputs, preset = _scoring_tab(presets, examples)
        with gr.Tab("Search a library"):
            _search_tab(examples)

        def apply_preset(name):
            if name not in presets:
                return gr.update(), gr.update()
            return "\n".join(presets[name]["labels"]), presets[name].get("top_k", 1)

        preset.change(apply_preset, inputs=preset, outputs=[labels, top_k], api_visibility="private")
        # typing in the box makes the labels custom: clear the preset so the page does not claim otherwise
        labels.input(lambda: None, outputs=preset, api_visibility="private")
        submit.click(_classify_event, inputs=[audio, labels, multi, top_k], outputs=list(outputs), api_name="classify")
        demo.unload(release_session)
    return demo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build_demo().launch(**launch_options())
