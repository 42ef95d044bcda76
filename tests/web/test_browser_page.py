"""The static page web/ in headless Chromium: the exported tiny model scored client-side with onnxruntime-web.

The page, its node_modules and an exported model folder are served from one temporary folder on 127.0.0.1;
every request to anything else is aborted and counted. The reference is the PyTorch pipeline on the same
WAV file: it checks the whole chain at once (JS tokenizer, segmenting, padding mask, WASM kernels, scoring)
against the shipped Python code, not against the same ONNX files.

A 24 kHz mono WAV is decoded without resampling, so the page must agree within 1e-3 per score. For a WAV at
another rate the page resamples with scipy's resample_poly filter rewritten in JS, and must agree as well; the
browser's own resamplers (decodeAudioData's, needed for other formats, and an OfflineAudioContext rendering) are
measured against resample_poly (printed; run with -s) and bounded loosely.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS

from meralign.data.synthetic.render import render_clip
from meralign.publish.folder import save_model_folder
from meralign.testing import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB = REPO_ROOT / "web"
PAGE_FILES = [
    WEB / "node_modules/onnxruntime-web/dist/ort.wasm.min.mjs",
    WEB / "node_modules/@huggingface/tokenizers/dist/tokenizers.min.mjs",
]
LABELS = ["joyful", "melancholic", "tense", "serene", "angry"]
SEGMENT_SECONDS = 2.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing (apt-get install -y chromium)"),
    pytest.mark.skipif(
        not all(p.exists() for p in PAGE_FILES), reason="web/node_modules is missing: run `npm ci` in web/"
    ),
]


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def _served(model, root: Path):
    """(base URL, site folder, model): web/ and `model` exported (with onnx/) under `root`, on loopback."""
    from meralign.onnx_export import export_onnx

    save_model_folder(model, root / "model")
    export_onnx(model, root / "model")
    (root / "web").symlink_to(WEB, target_is_directory=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, model
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The tiny model (2 s segments, the paper's bare labels) served with the page."""
    pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")
    with _served(build_tiny_model(segment_seconds=SEGMENT_SECONDS), tmp_path_factory.mktemp("site")) as served:
        yield served


@pytest.fixture(scope="module")
def affect_site(tmp_path_factory):
    """A tiny model in the `affect` label space: a 7-template ensemble and a saved transform."""
    pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")
    from meralign.alignment.label_space import resolve_label_space

    model = build_tiny_model(segment_seconds=SEGMENT_SECONDS, seed=1)
    model.config.label_space = resolve_label_space("affect")
    with _served(model, tmp_path_factory.mktemp("affect_site")) as served:
        yield served


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _open_page(browser, base: str, query: str = ""):
    """The page, loaded and ready, with every request off the site aborted and recorded."""
    page = browser.new_page()
    outside: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith(base + "/"):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(f"{base}/web/index.html?model=/model/{query}")
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    return page, outside


def _score_in_page(browser, base: str, wav: Path, labels: list[str], method: str = "auto") -> tuple[dict, list]:
    page, outside = _open_page(browser, base, f"&resample={method}")
    try:
        page.locator("#audio-file").set_input_files(str(wav))
        page.locator("#labels").fill("\n".join(labels))
        page.locator("#run").click()
        page.wait_for_selector("body[data-done]", timeout=120_000)
        error = page.evaluate("window.meralignError || null")
        assert error is None, f"the page failed: {error}"
        result = page.evaluate("window.meralignResult")
        shown = [
            (item.get_attribute("data-label"), float(item.get_attribute("data-score")))
            for item in page.locator("#scores li").all()
        ]
        result["shown"] = shown
        result["timeline_cells"] = page.locator("#timeline rect").count()
    finally:
        page.close()
    return result, outside


def _python_scores(model, wav: Path, labels: list[str]) -> dict:
    """The PyTorch pipeline's scores of the same file, per segment too."""
    from helpers import make_pipeline

    from modeling_meralign import build_processors

    pipe = make_pipeline(model, build_processors(model.config, model.config.text_name_or_path))
    out = pipe(str(wav), candidate_labels=labels, return_segments=True)
    scores = dict(zip(out["labels"], out["scores"]))
    segments = [[segment["scores"][label] for label in labels] for segment in out["segments"]]
    return {
        "top": out["labels"][0],
        "scores": [scores[label] for label in labels],
        "segments": segments,
        "bounds": [(s["start"], s["end"]) for s in out["segments"]],
    }


def _write_wav(path: Path, sampling_rate: int, seconds: float = 7.3) -> Path:
    import soundfile as sf

    audio = render_clip(["joyful", "tense"], seed=3, seconds=seconds, sampling_rate=sampling_rate)
    sf.write(str(path), audio, sampling_rate, subtype="PCM_16")
    return path


def test_page_scores_a_24khz_wav_like_the_python_pipeline(site, browser, tmp_path):
    base, _, model = site
    wav = _write_wav(tmp_path / "clip_24k.wav", 24_000)  # 7.3 s: segments 0-2, 2-4, 4-6 and a padded 6-7.3
    page, outside = _score_in_page(browser, base, wav, LABELS)
    expected = _python_scores(model, wav, LABELS)

    assert not outside, f"the page reached outside the site: {outside}"
    assert len(page["segments"]) == len(expected["segments"]) == 4
    bounds = [t for s in page["segments"] for t in (s["start"], s["end"])]
    assert bounds == pytest.approx([t for bound in expected["bounds"] for t in bound])
    assert page["ranked"][0]["label"] == expected["top"]
    assert np.abs(np.array(page["scores"]) - expected["scores"]).max() < 1e-3
    assert np.abs(np.array([s["scores"] for s in page["segments"]]) - expected["segments"]).max() < 1e-3
    # what the page shows: sorted, the same numbers, one timeline cell per label and segment
    assert [label for label, _ in page["shown"]] == [r["label"] for r in page["ranked"]]
    assert [score for _, score in page["shown"]] == sorted((score for _, score in page["shown"]), reverse=True)
    assert page["timeline_cells"] == len(LABELS) * 4
    print(f"\n24 kHz: max |page - python| score {np.abs(np.array(page['scores']) - expected['scores']).max():.2e}")


def test_page_scores_in_the_models_label_space(affect_site, browser, tmp_path):
    """Template ensemble, transform and the underscore rule ("joyful_activation" reads "joyful activation")."""
    base, _, model = affect_site
    labels = ["joyful_activation", "sadness", "tension", "calm"]
    wav = _write_wav(tmp_path / "clip.wav", 24_000, 5.0)
    page, outside = _score_in_page(browser, base, wav, labels)
    expected = _python_scores(model, wav, labels)
    assert not outside
    assert page["ranked"][0]["label"] == expected["top"]
    assert np.abs(np.array(page["scores"]) - expected["scores"]).max() < 1e-3


def test_page_refuses_bad_labels_with_a_message(site, browser, tmp_path):
    base, _, _ = site
    page, _ = _open_page(browser, base)
    try:
        page.locator("#audio-file").set_input_files(str(_write_wav(tmp_path / "short.wav", 24_000, 1.0)))
        page.locator("#labels").fill("joyful\njoyful")
        page.locator("#run").click()
        page.wait_for_selector("body[data-done='error']", timeout=30_000)
        assert "given twice" in page.locator("#status").inner_text()
    finally:
        page.close()


def _browser_resample(browser, base: str, wav_url: str, method: str) -> np.ndarray:
    page, _ = _open_page(browser, base)
    try:
        samples = page.evaluate(
            """async ([url, method]) => {
            const m = await import("./meralign.js");
            const bytes = await (await fetch(url)).arrayBuffer();
            return Array.from(await m.decodeMono(bytes, 24000, method));
        }""",
            [wav_url, method],
        )
    finally:
        page.close()
    return np.asarray(samples, dtype=np.float64)


def test_browser_resampling_at_44khz_against_resample_poly(site, browser):
    """A 44.1 kHz WAV through the page's three resamplers, against scipy's resample_poly and the pipeline's scores.

    "auto" (the page's default for WAV) is resample_poly's filter written in JS: it must agree within 1e-3 like
    the 24 kHz file. "decode" (decodeAudioData at 24 kHz, the only way for other formats) and "render" (an
    AudioBufferSourceNode in an OfflineAudioContext) use the browser's own filters: measured, loosely bounded.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    base, root, model = site
    wav = _write_wav(root / "clip_44k.wav", 44_100)
    source, _ = sf.read(str(wav), dtype="float32")
    reference = resample_poly(source, 80, 147)  # 24000 / 44100, as audio_meralign.resample does
    expected = _python_scores(model, wav, LABELS)
    bounds = {"auto": (60.0, 1e-3), "decode": (30.0, 0.02), "render": (20.0, 0.05)}  # (min SNR dB, max score move)
    report = {}
    for method, (min_snr, max_moved) in bounds.items():
        samples = _browser_resample(browser, base, "/clip_44k.wav", method)
        n = min(len(samples), len(reference))
        error = samples[:n] - reference[:n]
        snr = 10 * np.log10(np.sum(reference[:n] ** 2) / np.sum(error**2))
        page, _ = _score_in_page(browser, base, wav, LABELS, method)
        moved = float(np.abs(np.array(page["scores"]) - expected["scores"]).max())
        report[method] = {
            "length": len(samples),
            "python_length": len(reference),
            "snr_db": round(float(snr), 1),
            "max_abs_sample_error": float(np.abs(error).max()),
            "max_score_difference": moved,
            "same_top_label": page["ranked"][0]["label"] == expected["top"],
        }
        assert abs(len(samples) - len(reference)) <= 2, report[method]
        assert snr > min_snr and moved < max_moved, (method, report[method])
    assert report["auto"]["same_top_label"]
    print("\n44.1 kHz, browser vs scipy resample_poly:\n" + json.dumps(report, indent=1))
