"""The model a library is built with: loaded exactly as a user loads it, and named so it can be loaded again."""

from __future__ import annotations

import os
from pathlib import Path

TASK = "zero-shot-music-emotion"


def model_reference(model) -> str:
    """How the database names `model`: a local folder as its absolute path (valid from any working folder),
    anything else (a Hub id) as given."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise TypeError(f"--model must be a model folder or a Hub id, got {model!r}")
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.absolute())
    if path.exists() or os.fspath(model).startswith((".", "/", "~")):
        raise ValueError(f"--model {os.fspath(model)!r} is not a model folder (no such folder)")
    return os.fspath(model)


def load_pipeline(model: str, device=None):
    """The zero-shot-music-emotion pipeline of `model`, loaded with the model's own remote code as a user does,
    so the library embeds and scores with exactly the code of the model it names."""
    from transformers import pipeline

    try:
        return pipeline(TASK, model=model, trust_remote_code=True, device=device)
    except OSError as err:  # transformers' message for a missing folder or an unreachable Hub id
        raise ValueError(f"--model {model!r} could not be loaded: {err}") from None
