"""The `meralign` command: index, tag, search and similar end to end, and the messages of bad input.

The model is loaded once per session: `load_pipeline` is replaced by one returning the session's pipeline of the
same folder (after checking the folder asked for), so each command does not load it again.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEGMENT_SECONDS

from meralign.library import api
from meralign.library.cli import main


@pytest.fixture
def loads(monkeypatch, library_pipe, tiny_model_dir) -> list[str]:
    """The models the commands load (each one must be the tiny model's folder)."""
    loaded: list[str] = []

    def load(model, device=None):
        loaded.append(model)
        assert Path(model) == Path(tiny_model_dir).absolute()
        return library_pipe

    monkeypatch.setattr(api, "load_pipeline", load)
    return loaded


def test_index_tag_search_similar(loads, music, tiny_model_dir, tmp_path, capsys):
    db = str(tmp_path / "db")
    index = ["index", str(music / "albums"), str(music / "joyful.wav"), "--db", db, "--model", str(tiny_model_dir)]
    assert main([*index, "--segment-seconds", str(SEGMENT_SECONDS), "--no-progress"]) == 0
    assert "indexed 4 files" in capsys.readouterr().out
    labels = ["joyful", "sad", "angry, aggressive"]
    assert main(["tag", "--db", db, "--labels", *labels, "--output", str(tmp_path / "tags.csv")]) == 0
    with open(tmp_path / "tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} == set(labels) and len(rows) == 4 * len(labels)  # the comma stays in
    assert main(["tag", "--db", db, "--labels", *labels, "--top-k", "1", "--output", str(tmp_path / "t.json")]) == 0
    tags = json.loads((tmp_path / "t.json").read_text())
    assert len(tags) == 4 and all(len(t["labels"]) == 1 for t in tags)
    capsys.readouterr()
    assert main(["search", "--db", db, "melancholic but hopeful", "--top", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 2 and {"path", "start", "end", "cosine", "score"} <= set(found[0])
    assert main(["similar", "--db", db, str(music / "joyful.wav"), "--top", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(str(music / "joyful.wav"))
    assert loads == [str(Path(tiny_model_dir).absolute())] * 5  # tag/search/similar read the model from the db


def _fails(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_exits_2_with_the_argument_named(loads, music, tiny_model_dir, tmp_path, capsys):
    db = str(tmp_path / "db")
    model = ["--model", str(tiny_model_dir)]
    assert "PATH" in _fails(["index", str(tmp_path / "nowhere"), "--db", db, *model], capsys)
    assert loads == []  # refused before the model was loaded
    (tmp_path / "file").write_text("x")
    assert "--db" in _fails(["index", str(music), "--db", str(tmp_path / "file" / "db"), *model], capsys)
    assert "--model is required" in _fails(["index", str(music / "joyful.wav"), "--db", db], capsys)
    assert "does not exist" in _fails(["tag", "--db", db, "--labels", "a", "--output", "t.csv"], capsys)
    assert main(["index", str(music / "joyful.wav"), "--db", db, *model, "--no-progress"]) == 0
    assert "--output must end in .csv or .json" in _fails(
        ["tag", "--db", db, "--labels", "a", "--output", "t.txt"], capsys
    )
    assert "--labels contains an empty label" in _fails(
        ["tag", "--db", db, "--labels", " ", "--output", "t.csv"], capsys
    )
    with pytest.raises(SystemExit) as info:  # argparse: --labels needs at least one value
        main(["tag", "--db", db, "--labels", "--output", "t.csv"])
    assert info.value.code == 2
    assert "not a model folder" in _fails(["search", "--db", db, "sad", "--model", str(tmp_path / "none")], capsys)
    assert "FILE" in _fails(["similar", "--db", db, str(tmp_path / "none.wav")], capsys)


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "meralign"
    result = subprocess.run(
        [str(script), "tag", "--help"], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert result.returncode == 0 and "--labels" in result.stdout and "--aggregation" in result.stdout
