"""The Gradio Space: launched on 127.0.0.1 with a tiny model folder and called through gradio_client.

The app is loaded from space/app.py by path, as the Space runs it (it must not need the meralign package).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from helpers import REPO_ROOT

from meralign.publish.space import SPACE_CODE_FILES

SPACE_DIR = REPO_ROOT / "space"
MAX_SECONDS = 4.0
MAX_UPLOAD_MB = 1.0


def load_app(module_name: str):
    """space/app.py as a fresh module (its own settings and caches). Its folder goes on sys.path, as when a Space
    runs `python app.py`, so that it imports its sibling modules."""
    if str(SPACE_DIR) not in sys.path:
        sys.path.insert(0, str(SPACE_DIR))
    spec = importlib.util.spec_from_file_location(module_name, SPACE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def write_wav(path: Path, seconds: float, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    sf.write(path, np.repeat(wave[:, None], channels, axis=1).astype(np.float32), sr, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    module = load_app("meralign_space_app_test")
    yield module
    sys.modules.pop("meralign_space_app_test", None)


@pytest.fixture(scope="module")
def served(app, tiny_model_dir):
    demo = app.build_demo(str(tiny_model_dir), max_seconds=MAX_SECONDS, max_upload_mb=MAX_UPLOAD_MB)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        yield demo, Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("clips") / "clip.wav", 2.0)


def test_client_call_returns_scores_for_the_given_labels(served, clip, tiny_model_dir):
    _, client = served
    labels = ["happy", "sad", "tense", "angry, aggressive"]
    result, timeline, affect = client.predict(handle_file(str(clip)), ";".join(labels), False, 4, api_name="/classify")
    confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
    assert set(confidences) == set(labels)  # ';' separates, the comma inside a CAL500 label does not
    assert result["label"] == max(confidences, key=confidences.get)
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-6)  # softmax over all four labels

    from transformers import pipeline  # the app must show exactly what the pipeline computes

    expected = pipeline("zero-shot-music-emotion", model=str(tiny_model_dir), trust_remote_code=True)(
        str(clip), candidate_labels=labels
    )
    assert confidences == pytest.approx({r["label"]: r["score"] for r in expected}, abs=1e-6)

    rows = timeline["data"]
    assert timeline["columns"] == ["seconds", "score", "label"]
    assert {r[2] for r in rows} == set(labels) and {r[0] for r in rows} == {0.0, 2.0}
    assert affect["columns"] == ["valence", "arousal", "segment"] and affect["data"] == []  # no affect axes


def test_top_k_and_multi_label(served, clip):
    _, client = served
    result, timeline, _ = client.predict(
        handle_file(str(clip)), "joyful\nmelancholic\ntense\nserene", True, 2, api_name="/classify"
    )
    scores = [c["confidence"] for c in result["confidences"]]
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert {r[2] for r in timeline["data"]} == {c["label"] for c in result["confidences"]}


def test_over_long_upload_gets_the_limit_message(served, tmp_path):
    _, client = served
    long_clip = write_wav(tmp_path / "long.wav", MAX_SECONDS + 2, sr=8000)
    with pytest.raises(Exception, match=r"6 s long; the limit is 4 s"):
        client.predict(handle_file(str(long_clip)), "happy\nsad", False, 1, api_name="/classify")


def test_gradio_refuses_uploads_over_the_size_limit(served, tmp_path):
    _, client = served
    big = write_wav(
        tmp_path / "big.wav", 3.0, sr=48000, channels=2, subtype="FLOAT"
    )  # 1.1 MB, under the duration limit
    assert big.stat().st_size > MAX_UPLOAD_MB * 2**20
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        client.predict(handle_file(str(big)), "happy", False, 1, api_name="/classify")


def test_classify_messages_for_bad_input(app, served, clip, tmp_path, monkeypatch):
    with pytest.raises(gr.Error, match="Upload or record"):
        app.classify(None, "happy", False, 1)
    with pytest.raises(gr.Error, match="not URLs"):
        app.classify("https://example.com/song.mp3", "happy", False, 1)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    with pytest.raises(gr.Error, match="Could not read this file as audio"):
        app.classify(str(not_audio), "happy", False, 1)
    with pytest.raises(gr.Error, match="at least one emotion label"):
        app.classify(str(clip), " ;\n ; ", False, 1)
    monkeypatch.setattr(app, "_settings", dataclasses.replace(app.current_settings(), max_upload_bytes=1000))
    with pytest.raises(gr.Error, match=r"MB; the limit is"):
        app.classify(str(clip), "happy", False, 1)


def test_a_model_with_affect_axes_plots_each_segments_valence_and_arousal(tiny_model, clip, tmp_path):
    from meralign.alignment.label_space import resolve_label_space
    from meralign.publish.folder import save_model_folder

    model = copy.copy(tiny_model)  # shares every weight; only the config differs
    model.config = copy.deepcopy(tiny_model.config)
    model.config.label_space = resolve_label_space("default")
    model.config.affect_calibration = {"valence": [2.0, 0.1], "arousal": [3.0, -0.2]}
    save_model_folder(model, tmp_path / "affect_model")
    module = load_app("meralign_space_app_affect_test")
    try:
        module._settings = module.resolve_settings(str(tmp_path / "affect_model"), MAX_SECONDS, MAX_UPLOAD_MB)
        _, _, affect = module.classify(str(clip), "happy\nsad", False, 2)
        pipe = module.get_pipeline(str(tmp_path / "affect_model"))
        expected = pipe(str(clip), candidate_labels=["happy", "sad"], return_affect=True, return_segments=True)
    finally:
        sys.modules.pop("meralign_space_app_affect_test", None)
    assert list(affect.columns) == ["valence", "arousal", "segment"]
    assert affect.values.tolist() == [[s["valence"], s["arousal"], "0-2 s"] for s in expected["segments"]]


class FailingPipeline:
    has_affect = False

    def __init__(self, error: Exception):
        self.error = error

    def __call__(self, *args, **kwargs):
        raise self.error


def test_pipeline_errors_are_shown_or_hidden(app, served, clip, monkeypatch):
    value_error = FailingPipeline(ValueError("candidate_labels contains something odd"))
    monkeypatch.setattr(app, "get_pipeline", lambda model_id: value_error)
    with pytest.raises(gr.Error, match="candidate_labels contains something odd"):
        app.classify(str(clip), "happy", False, 1)
    crash = FailingPipeline(RuntimeError("internal detail /secret/path"))
    monkeypatch.setattr(app, "get_pipeline", lambda model_id: crash)
    with pytest.raises(gr.Error) as info:
        app.classify(str(clip), "happy", False, 1)
    assert info.value.message == app.GENERIC_ERROR and "secret" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("happy\nsad\n\n tense ", ["happy", "sad", "tense"]),
        ("angry, aggressive; sad", ["angry, aggressive", "sad"]),
        ("happy, sad,tense", ["happy", "sad", "tense"]),
        ("sad\nsad\nhappy", ["sad", "happy"]),
    ],
)
def test_label_rule(app, text, expected):
    assert app.parse_labels(text) == expected


def test_presets_are_the_builtin_vocabularies_and_survive_the_text_box(app):
    from meralign.vocabularies import BUILTIN

    presets = app.load_presets()
    assert {n: (tuple(p["labels"]), p["top_k"]) for n, p in presets.items()} == {
        n: (v.labels, v.top_k) for n, v in BUILTIN.items()
    }
    for preset in presets.values():  # what the dropdown writes into the box parses back to the same labels
        assert app.parse_labels("\n".join(preset["labels"])) == preset["labels"]


def test_session_end_deletes_its_uploads_unless_shared(app):
    folder = Path(gr.utils.get_upload_folder()) / f"meralign-test-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    own, shared = folder / "own.wav", folder / "shared.wav"
    for path in (own, shared):
        path.write_bytes(b"RIFF")
    app._track_upload(str(own), "session-a")
    app._track_upload(str(shared), "session-a")
    app._track_upload(str(shared), "session-b")
    app.release_session(gr.Request(session_hash="session-a"))
    assert not own.exists() and shared.exists()
    app.release_session(gr.Request(session_hash="session-b"))
    assert not shared.exists() and not folder.exists()


def test_app_imports_only_what_the_space_installs():
    """A Space has the requirements (plus gradio from sdk_version) and its own files, never this project's
    package."""
    own = {path.stem for path in SPACE_DIR.glob("*.py")}
    imported = set()
    for path in SPACE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported |= {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"} - own
    lines = (SPACE_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    required = {
        re.split(r"[<>=!~\[ ]", line.strip())[0].lower() for line in lines if line.strip() and not line.startswith("#")
    }
    assert third_party <= required | {"gradio"}, third_party - required
    assert {"torch", "transformers", "numpy", "soundfile", "scipy"} <= required  # the model's remote code
    assert "meralign" not in imported
    assert {f"{name}.py" for name in own} <= set(SPACE_CODE_FILES)  # every module of the Space is uploaded


def test_missing_model_id_is_a_clear_error(app, monkeypatch):
    monkeypatch.delenv("MODEL_ID", raising=False)
    monkeypatch.setattr(app, "read_space_config", lambda path=app.CONFIG_FILE: {})
    with pytest.raises(ValueError, match="MODEL_ID"):
        app.resolve_settings()
    monkeypatch.setenv("MAX_AUDIO_SECONDS", "ten")
    with pytest.raises(ValueError, match="MAX_AUDIO_SECONDS"):
        app.resolve_settings("org/m")


def test_the_space_runs_the_fastest_backend_the_model_folder_offers(app, tiny_model_dir, tiny_model_onnx, monkeypatch):
    """Every backend that opens is timed; the fastest is kept, the earlier one on a tie."""
    assert app.load_fastest_pipeline(str(tiny_model_dir)).backend == "torch"  # no onnx/ in that folder
    folder, _ = tiny_model_onnx
    timed = []
    assert app.load_fastest_pipeline(str(folder)).backend in app.BACKENDS_TRIED  # real timings: any may win
    for seconds, fastest in (
        ({"onnx-int8": 0.5, "onnx-quantized": 0.3, "onnx": 0.4, "torch": 0.9}, "onnx-quantized"),
        ({"onnx-int8": 0.2, "onnx-quantized": 0.2, "onnx": 0.4, "torch": 0.9}, "onnx-int8"),
        ({"onnx-int8": 0.5, "onnx-quantized": 0.6, "onnx": 0.4, "torch": 0.3}, "torch"),
    ):
        monkeypatch.setattr(
            app, "_probe_seconds", lambda pipe, timer, s=seconds: timed.append(pipe.backend) or s[pipe.backend]
        )
        timed.clear()
        assert app.load_fastest_pipeline(str(folder)).backend == fastest
        assert timed == list(app.BACKENDS_TRIED)  # every backend opened and was timed
    timed.clear()
    assert app.load_fastest_pipeline(str(folder), backends=("onnx", "onnx-int8")).backend == "onnx"
    assert timed == ["onnx", "onnx-int8"]
    timed.clear()
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")  # no int8 kernels: both int8 backends passed over
    assert app.load_fastest_pipeline(str(folder)).backend == "torch"  # the fastest of the last timings above
    assert timed == ["onnx", "torch"]


def test_the_backend_probe_times_the_audio_encoder_without_its_cache(app, tiny_model_onnx):
    """Two timed runs after a warm-up, on the tower itself: a cached repeat would time nothing."""
    from transformers import pipeline

    pipe = pipeline(app.TASK, model=str(tiny_model_onnx[0]), trust_remote_code=True)
    ticks = iter(range(100))
    calls = []
    real = pipe.encode_segments
    pipe.encode_segments = lambda values, valid: calls.append(values.shape) or real(values, valid)
    assert app._probe_seconds(pipe, lambda: next(ticks)) == 1
    segment = int(pipe.model.config.segment_seconds * pipe.model.config.sampling_rate)
    assert calls == [(1, segment)] * 3 and not pipe._audio_cache
