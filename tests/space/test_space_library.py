"""The Space's "Search a library" tab: the example clips ranked by their best moment for any words.

The library is built on the first search, not at startup; through gradio_client the endpoint returns the ranked
table and one audio player per clip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio_client import Client  # noqa: E402
from test_space import load_app  # noqa: E402


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    module = load_app("meralign_space_app_library_test")
    yield module
    sys.modules.pop("meralign_space_app_library_test", None)


@pytest.fixture(scope="module")
def served(app, tiny_model_dir):
    demo = app.build_demo(str(tiny_model_dir), max_seconds=30)
    assert app._library == {}  # startup builds no library (and loads no model)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        yield demo, Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_search_ranks_clips_by_their_best_moment(app, served):
    demo, client = served
    table, first, second = client.predict("melancholic but hopeful", api_name="/search_library")
    rows = table["data"]
    assert table["headers"] == ["rank", "clip", "best moment (s)", "cosine"] and len(rows) == 2
    assert {r[1] for r in rows} == {"bright_major_arpeggio.wav", "slow_minor_swell.wav"}
    assert rows[0][3] >= rows[1][3]
    for row, player in zip(rows, (first, second)):  # players in rank order, labelled with the best moment
        assert Path(player["value"]).name == row[1] and Path(player["value"]).is_file()
        assert player["label"] == f"{row[0]}. {row[1]}: best moment {row[2]} s"

    assert len(app._library) == 1  # built by the first search


def test_the_reported_moment_is_each_clips_best_segment(app, served, tmp_path):
    clips = app.make_example_clips(tmp_path)
    results = app.search_clips("melancholic but hopeful", clips)
    pipe = app.get_pipeline(app.current_settings().model_id)
    query = app.library_search.query_vector(pipe, "melancholic but hopeful")
    best = {}
    for clip in clips:  # brute force over each clip's segments
        embeds, times = pipe.recording_embeddings(
            str(clip), segment_seconds=app.library_search.LIBRARY_SEGMENT_SECONDS
        )
        cosine = embeds.float().numpy() @ query
        best[str(clip)] = (float(cosine.max()), times[int(np.argmax(cosine))])
        assert len(times) == 2
    assert [r["clip"] for r in results] == sorted(best, key=lambda c: -best[c][0])
    for result in results:
        cosine, (start, end) = best[result["clip"]]
        assert (result["start"], result["end"]) == (start, end) and result["cosine"] == pytest.approx(cosine, abs=1e-5)


def test_search_refuses_empty_or_overlong_words(app, served):
    with pytest.raises(gr.Error, match="Type what to search for"):
        app.search_clips("   ", [])
    with pytest.raises(gr.Error, match="limited to"):
        app.search_clips("x" * (app.MAX_LABEL_CHARS + 1), [])
