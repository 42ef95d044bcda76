"""What the Space accepts: the labels text and the audio file, checked before the model sees them.

Every refusal is a gr.Error with a message for the user; nothing here loads the model or decodes audio (the
duration comes from the file header)."""

from __future__ import annotations

import os
import re

import gradio as gr
import soundfile as sf

MAX_LABELS = 100
MAX_LABEL_CHARS = 100
# The labels box is refused before it is split when it is longer than any valid list could be (with room for
# blank lines and spaces), so a multi-megabyte paste costs nothing.
MAX_LABELS_TEXT_CHARS = 4 * MAX_LABELS * (MAX_LABEL_CHARS + 1)
# libsndfile reports a length it does not know (e.g. a streamed FLAC) as the largest frame count.
UNKNOWN_FRAMES = 2**62
MAX_TOP_K = 10
READABLE_FORMATS = "WAV, FLAC, OGG/Vorbis, Opus, MP3 or AIFF"
LABEL_RULE = (
    "One label per line, or labels separated by `;`. Only when the text has neither are commas "
    'separators (CAL500\'s labels such as "angry, aggressive" contain commas).'
)


def parse_labels(text) -> list[str]:
    """Candidate labels from the text box. One per line or `;`-separated; commas only when neither is present.
    Blank entries are dropped and repeated labels kept once."""
    if not isinstance(text, str):
        raise gr.Error("Type at least one emotion label.", print_exception=False)
    if len(text) > MAX_LABELS_TEXT_CHARS:
        raise gr.Error(
            f"The labels text is {len(text)} characters long; the limit is {MAX_LABELS_TEXT_CHARS} "
            f"({MAX_LABELS} labels of at most {MAX_LABEL_CHARS} characters).",
            print_exception=False,
        )
    parts = re.split(r"[;\n]", text) if re.search(r"[;\n]", text) else text.split(",")
    labels = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not labels:
        raise gr.Error("Type at least one emotion label (one per line).", print_exception=False)
    if len(labels) > MAX_LABELS:
        raise gr.Error(f"Too many labels: {len(labels)} (the limit is {MAX_LABELS}).", print_exception=False)
    long = [label for label in labels if len(label) > MAX_LABEL_CHARS]
    if long:
        raise gr.Error(
            f"Labels must be at most {MAX_LABEL_CHARS} characters; {long[0][:30]!r}... is longer.",
            print_exception=False,
        )
    return labels


def check_audio(audio_path, max_upload_bytes: int, max_seconds: float) -> float:
    """Refuse what should not reach the model (nothing, URLs, oversized or over-long files); return the duration.

    The duration comes from the file header (soundfile.info), before anything is decoded."""
    if audio_path is None or (isinstance(audio_path, str) and not audio_path):
        raise gr.Error("Upload or record a music clip first.", print_exception=False)
    if not isinstance(audio_path, (str, os.PathLike)):
        raise gr.Error("The audio input must be an uploaded or recorded file.", print_exception=False)
    path = os.fspath(audio_path)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
        raise gr.Error("Only uploaded or recorded audio is accepted, not URLs.", print_exception=False)
    if not os.path.isfile(path):
        raise gr.Error("The uploaded file is no longer available: upload it again.", print_exception=False)
    size = os.path.getsize(path)
    if size > max_upload_bytes:
        raise gr.Error(
            f"The file is {size / 2**20:.1f} MB; the limit is {max_upload_bytes / 2**20:.0f} MB.",
            print_exception=False,
        )
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError, TypeError):
        raise gr.Error(
            f"Could not read this file as audio. Supported formats: {READABLE_FORMATS}.", print_exception=False
        ) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise gr.Error("The recording is empty.", print_exception=False)
    if info.frames >= UNKNOWN_FRAMES:
        raise gr.Error(
            "The file does not state its duration (a streamed recording?); save it as a regular "
            f"{READABLE_FORMATS} file and upload it again.",
            print_exception=False,
        )
    duration = info.frames / info.samplerate
    if duration > max_seconds:
        raise gr.Error(
            f"The recording is {duration:.0f} s long; the limit is {max_seconds:.0f} s. Trim it and try again.",
            print_exception=False,
        )
    return duration


def top_k_of(value, n_labels: int) -> int:
    """The slider's value as a top-k between 1 and the number of labels."""
    try:
        k = int(round(float(value)))
    except (TypeError, ValueError):
        raise gr.Error(f"top-k must be a number, got {value!r}.", print_exception=False) from None
    return max(1, min(k, n_labels))
