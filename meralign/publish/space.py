"""The Gradio Space's files: the app from `space/`, and a README and config generated for one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meralign.publish.card import DEFAULT_LICENSE, TASK_TAG
from meralign.publish.push_files import PushFile

SPACE_DIR = Path(__file__).resolve().parents[2] / "space"
SPACE_CONFIG_FILE = "space_config.json"
SPACE_CODE_FILES = ("app.py", "page_inputs.py", "library_search.py", "requirements.txt")
DEFAULT_GRADIO_SDK_VERSION = "6.31.0"  # the Gradio the Space app is tested with, when gradio is not installed


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


def build_space_readme(
    model_id: str,
    *,
    license: str = DEFAULT_LICENSE,
    title: str = "MERAlign: zero-shot music emotion",
    sdk_version: str | None = None,
) -> str:
    """The Space's README.md: Space metadata (sdk, version, app file, the model it runs) and a short text."""
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=sdk_version or _gradio_version(),
        app_file="app.py",
        models=[model_id],
        license=license,
        emoji="🎵",
        colorFrom="indigo",
        colorTo="pink",
        pinned=False,
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


def space_files(model_id: str, *, license: str = DEFAULT_LICENSE, space_dir=None) -> list[PushFile]:
    """The Space: the SPACE_CODE_FILES from `space/`, plus a README and config generated for this model."""
    space_dir = Path(space_dir) if space_dir is not None else SPACE_DIR
    files = []
    for name in SPACE_CODE_FILES:
        path = space_dir / name
        if not path.is_file():
            raise ValueError(
                f"space_dir {str(space_dir)!r} lacks {name}: push from a source checkout or pass --space_dir"
            )
        files.append(PushFile(name, local_path=path))
    config = json.dumps(space_config(model_id), indent=2, ensure_ascii=False) + "\n"
    files.append(PushFile(SPACE_CONFIG_FILE, content=config.encode("utf-8")))
    files.append(PushFile("README.md", content=build_space_readme(model_id, license=license).encode("utf-8")))
    return files
