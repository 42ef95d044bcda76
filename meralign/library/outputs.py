"""Writing a library's tags: CSV (one row per track and label) or JSON (one object per track), atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from meralign.files import atomic_write_text

FORMATS = (".csv", ".json")
CSV_COLUMNS = ("path", "duration", "rank", "label", "score")


def check_output(output) -> Path:
    """The --output file: its suffix chooses the format, so anything else is refused before scoring."""
    if not isinstance(output, (str, os.PathLike)) or not os.fspath(output):
        raise TypeError(f"--output must be a file path ending in .csv or .json, got {output!r}")
    path = Path(output).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"--output must end in .csv or .json (the format), got {os.fspath(output)!r}")
    if path.is_dir():
        raise ValueError(f"--output {os.fspath(output)!r} is a folder: give a file name")
    return path


def write_tags(rows: list[dict], output) -> Path:
    """`rows` from `Library.tag` into `output` (.csv or .json); readers never see a partial file."""
    path = check_output(output)
    text = _csv(rows) if path.suffix.lower() == ".csv" else json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise ValueError(f"--output {str(path)!r} could not be written: {err.strerror or err}") from None
    return path


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        for rank, tag in enumerate(row["labels"], 1):
            writer.writerow([row["path"], f"{row['duration']:.3f}", rank, tag["label"], repr(tag["score"])])
    return buffer.getvalue()
