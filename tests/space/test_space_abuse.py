"""The Space under abuse: what a public endpoint receives from anyone, refused quickly, in bounded memory, without
touching any file outside the temp folder; and a burst of concurrent requests served without errors or leaks.

The Space runs on 127.0.0.1 (space/app.py loaded by path, as a Space runs it) with a tiny model folder, a 30 s
duration limit and a 2 MB upload limit. Requests go through gradio_client, or as raw HTTP where the client would
refuse on its own. While they run, a process-wide audit hook records every file Python opens, every socket
connection and every subprocess, and soundfile is wrapped to record every path it decodes (libsndfile opens files
in C, out of the audit hook's sight). Each case asserts its message, its time, the server's memory, and that
neither it nor the scoring read or wrote anything outside the temp folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from helpers import REPO_ROOT

REPO = REPO_ROOT
MAX_SECONDS = 30.0
MAX_UPLOAD_MB = 2.0
CASE_LIMIT_S = 10.0  # every refusal and every accepted abuse case finishes well within this
CASE_MEMORY_MB = 200.0  # growth of the server's resident memory allowed per case
TEMP = os.path.realpath(tempfile.gettempdir())
# Python's own files (the interpreter and installed libraries) may be read: importing code is not reading data.
CODE_ROOTS = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


def load_module(name: str, path: Path):
    """A file as a module; its folder on sys.path (as when it runs as a script) for its sibling imports."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ the recorder
class Recorder:
    """Files opened (Python's audit events and soundfile), writes, connections and subprocesses, while armed."""

    def __init__(self):
        self.armed = False
        self.lock = threading.Lock()
        self.opened: list[tuple[str, str]] = []  # (path, "r" or "w")
        self.connections: list[str] = []
        self.subprocesses: list[str] = []

    def audit(self, event: str, args: tuple) -> None:
        if not self.armed:
            return
        if event == "open" and not isinstance(args[0], int):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = bool(mode and set(mode) & set("wax+")) or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            self._add(self.opened, (os.fsdecode(args[0]), "w" if writing else "r"))
        elif event == "socket.connect":
            self._add(self.connections, str(args[1]))
        elif event in ("subprocess.Popen", "os.system", "os.posix_spawn") or event.startswith(("os.exec", "os.spawn")):
            self._add(self.subprocesses, f"{event} {args!r}"[:200])

    def decoded(self, path) -> None:
        if self.armed and isinstance(path, (str, os.PathLike)):
            self._add(self.opened, (os.fspath(path), "r"))

    def _add(self, target: list, item) -> None:
        with self.lock:
            target.append(item)

    @contextmanager
    def watching(self):
        with self.lock:
            self.opened.clear(), self.connections.clear(), self.subprocesses.clear()
        self.armed = True
        try:
            yield self
        finally:
            time.sleep(0.2)  # let the server finish its share of the request
            self.armed = False

    def outside_temp(self) -> list[tuple[str, str]]:
        """Files opened outside the temp folder: any write, or a read that is not Python's own code."""
        bad = []
        for path, how in self.opened:
            real = os.path.realpath(os.path.abspath(path))
            if real == TEMP or real.startswith(TEMP + os.sep):
                continue
            # the memory sampler (psutil) reads this process's /proc entries
            if how == "r" and (
                real.startswith(CODE_ROOTS) or real.startswith((f"/proc/{os.getpid()}/", "/proc/self/"))
            ):
                continue
            bad.append((path, how))
        return bad


RECORDER = Recorder()
sys.addaudithook(RECORDER.audit)  # hooks cannot be removed; it does nothing unless armed


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    module = load_module("meralign_space_app_abuse", REPO / "space" / "app.py")
    yield module
    sys.modules.pop("meralign_space_app_abuse", None)


@pytest.fixture(scope="module")
def served(app, tiny_model_dir):
    demo = app.build_demo(str(tiny_model_dir), max_seconds=MAX_SECONDS, max_upload_mb=MAX_UPLOAD_MB)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    client = Client(demo.local_url, verbose=False, analytics_enabled=False)
    client.predict(handle_file(str(wav(tmp_dir() / "warmup.wav", 1.0))), "happy\nsad", False, 1, api_name="/classify")
    try:
        yield demo, client
    finally:
        client.close()
        demo.close()


@pytest.fixture(autouse=True)
def record_decoding(monkeypatch):
    """Every path soundfile is handed (the Space's header check and the pipeline's decoder) is recorded."""
    real_info, real_init = sf.info, sf.SoundFile.__init__

    def info(file, *args, **kwargs):
        RECORDER.decoded(file)
        return real_info(file, *args, **kwargs)

    def init(self, file, *args, **kwargs):
        RECORDER.decoded(file)
        return real_init(self, file, *args, **kwargs)

    monkeypatch.setattr(sf, "info", info)
    monkeypatch.setattr(sf.SoundFile, "__init__", init)


@pytest.fixture
def scorings(app, monkeypatch) -> list[str]:
    """Calls that reached the model (the pipeline), to prove refusals happen before it."""
    calls: list[str] = []
    real = app.get_pipeline

    class Counting:
        """The real pipeline, with each call recorded."""

        def __init__(self, pipe):
            self.pipe, self.has_affect = pipe, pipe.has_affect

        def __call__(self, *args, **kwargs):
            calls.append(str(args[0]))
            return self.pipe(*args, **kwargs)

    def counting(model_id):
        return Counting(real(model_id))

    monkeypatch.setattr(app, "get_pipeline", counting)
    return calls


_TMP_DIR: list[Path] = []


def tmp_dir() -> Path:
    if not _TMP_DIR:
        _TMP_DIR.append(Path(tempfile.mkdtemp(prefix="meralign-abuse-")))
    return _TMP_DIR[0]


def wav(path: Path, seconds: float, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr, subtype=subtype)
    return path


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@contextmanager
def bounded(limit_s: float = CASE_LIMIT_S, memory_mb: float = CASE_MEMORY_MB):
    """The block must finish within `limit_s` and raise the server's (this process's) memory by < `memory_mb`."""
    peak, stop = [rss_mb()], threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    before, start = rss_mb(), time.perf_counter()
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()
        elapsed, grown = time.perf_counter() - start, max(peak[0], rss_mb()) - before
    assert elapsed < limit_s, f"took {elapsed:.1f} s (limit {limit_s} s)"
    assert grown < memory_mb, f"memory grew by {grown:.0f} MB (limit {memory_mb} MB)"


def classify_via_client(client, path: Path, labels: str = "happy\nsad\ntense", multi: bool = False, k: int = 2):
    return client.predict(handle_file(str(path)), labels, multi, k, api_name="/classify")


def assert_clean(recorder: Recorder, server_port: int) -> None:
    assert recorder.outside_temp() == [], recorder.outside_temp()
    assert recorder.subprocesses == [], recorder.subprocesses
    assert all(f"'127.0.0.1', {server_port})" in c for c in recorder.connections), recorder.connections


def port(demo) -> int:
    return int(demo.local_url.rstrip("/").rsplit(":", 1)[1])


# --------------------------------------------------------------------------------------- crafted files
def flac_of_silence(seconds: float, sr: int = 8000) -> bytes:
    """Highly compressible audio: two hours of silence at 8 kHz is ~180 KB of FLAC."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        minute = np.zeros(60 * sr, np.int16)
        for _ in range(int(seconds // 60)):
            f.write(minute)
    return buffer.getvalue()


def flac_claiming(data: bytes, total_samples: int) -> bytes:
    """The same FLAC with STREAMINFO's 36-bit total sample count replaced (0 means 'unknown')."""
    out = bytearray(data)
    assert out[:4] == b"fLaC"
    start = 8 + 10  # 'fLaC', the metadata block header, then 10 bytes before rate/channels/bits/total
    packed = int.from_bytes(out[start : start + 8], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    out[start : start + 8] = packed.to_bytes(8, "big")
    return bytes(out)


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def ogg_claiming(seconds: float, claimed_samples: int, sr: int = 8000) -> bytes:
    """Ogg/Vorbis silence whose last page states a granule position (the stream length) of `claimed_samples`."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sr, 1, format="OGG", subtype="VORBIS") as f:
        for _ in range(int(seconds // 60)):  # a minute per write: one 10-minute write crashes libsndfile's encoder
            f.write(np.zeros(60 * sr, np.float32))
    data = bytearray(buffer.getvalue())
    last = data.rfind(b"OggS")
    n_segments = data[last + 26]
    size = 27 + n_segments + sum(data[last + 27 : last + 27 + n_segments])
    data[last + 6 : last + 14] = claimed_samples.to_bytes(8, "little")
    data[last + 22 : last + 26] = bytes(4)
    data[last + 22 : last + 26] = _ogg_crc(bytes(data[last : last + size])).to_bytes(4, "little")
    return bytes(data)


def wav_claiming_data(seconds: float, claimed_bytes: int, sr: int = 16000) -> bytes:
    """A PCM_16 WAV whose data chunk says `claimed_bytes` while the file holds `seconds` of audio."""
    samples = (0.3 * np.sin(np.arange(int(seconds * sr)) / 5) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, sr, sr * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + claimed_bytes, 2**32 - 1))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", claimed_bytes)
        + samples
    )


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("song.wav", b"\0" * 10_000_000)  # a classic bomb: 10 MB of zeros in ~10 KB
    return buffer.getvalue()


NOT_AUDIO = {
    "notes.wav": b"this is a text file, not audio\n" * 20,
    "picture.mp3": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
    "noise.flac": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
    "empty.wav": b"",
    "page.wav": b"<!doctype html><html><script>alert(1)</script></html>",
    "archive.ogg": zip_archive(),
    "header_only.wav": wav_claiming_data(0.0, 0)[:44],
}


# ------------------------------------------------------------------------------------------ the cases
@pytest.mark.parametrize("name", list(NOT_AUDIO))
def test_uploads_that_are_not_audio_are_refused(served, scorings, name):
    demo, client = served
    path = tmp_dir() / name
    path.write_bytes(NOT_AUDIO[name])
    with RECORDER.watching() as rec, bounded(), pytest.raises(Exception) as info:
        classify_via_client(client, path)
    assert "Could not read this file as audio" in str(info.value) or "recording is empty" in str(info.value), str(
        info.value
    )
    assert scorings == []
    # the recorder saw the server check the upload (its copy in Gradio's cache, inside the temp folder)
    assert any(Path(p).name == name and os.path.realpath(p).startswith(TEMP) for p, _ in rec.opened), rec.opened
    assert_clean(rec, port(demo))


def test_huge_uploads_are_refused_by_the_server_before_they_are_stored(served):
    """Raw HTTP (the client would refuse on its own): 64 MB against the 2 MB limit, answered 413, nothing kept."""
    demo, _ = served
    folder = Path(gr.utils.get_upload_folder())
    before = {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    payload = io.BytesIO(os.urandom(64 * 2**20))
    with RECORDER.watching() as rec, bounded():
        response = httpx.post(
            demo.local_url + "gradio_api/upload", files={"files": ("huge.wav", payload, "audio/wav")}, timeout=30
        )
    assert response.status_code == 413 and "maximum allowed size" in response.text, response.text
    after = {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    assert not [p for p in after - before if p.stat().st_size > MAX_UPLOAD_MB * 2**20]
    assert_clean(rec, port(demo))


def test_a_huge_file_on_disk_is_refused_without_being_read(app, served, scorings):
    """A 4 GB (sparse) file reaching classify is refused from its size alone: it is never opened."""
    path = tmp_dir() / "huge_sparse.wav"
    with open(path, "wb") as f:
        f.truncate(4 * 2**30)
    with (
        RECORDER.watching() as rec,
        bounded(limit_s=2),
        pytest.raises(gr.Error, match=r"The file is 4096\.0 MB; the limit is 2 MB"),
    ):
        app.classify(str(path), "happy", False, 1)
    assert str(path) not in [p for p, _ in rec.opened] and scorings == []
    path.unlink()


def test_two_hours_of_flac_in_180_kb_are_refused_from_the_header(served, scorings):
    demo, client = served
    bomb = flac_of_silence(2 * 3600)
    assert len(bomb) < MAX_UPLOAD_MB * 2**20 / 5  # far under the upload limit: only the duration check stops it
    path = tmp_dir() / "two_hours.flac"
    path.write_bytes(bomb)
    with (
        RECORDER.watching() as rec,
        bounded(limit_s=5),
        pytest.raises(Exception, match=r"The recording is 7200 s long; the limit is 30 s"),
    ):
        classify_via_client(client, path)
    assert scorings == []
    assert_clean(rec, port(demo))


@pytest.mark.parametrize("kind", ["flac", "ogg", "wav"])
def test_a_header_that_understates_the_length_bounds_what_is_decoded(served, scorings, kind):
    """A file claiming 1 s while holding 2 h (FLAC), 10 min (Ogg), or claiming 4 GB of data while holding 1.5 s
    (WAV): the decoder stops where the header says, or at the real end, so scoring stays bounded."""
    demo, client = served
    data = {
        "flac": lambda: flac_claiming(flac_of_silence(2 * 3600), 8000),
        "ogg": lambda: ogg_claiming(600, 8000),
        "wav": lambda: wav_claiming_data(1.5, 2**32 - 2**20),
    }[kind]()
    path = tmp_dir() / f"understated.{kind}"
    path.write_bytes(data)
    assert sf.info(str(path)).duration <= 1.5
    with RECORDER.watching() as rec, bounded(limit_s=5):
        result, timeline, _ = classify_via_client(client, path)
    assert len(result["confidences"]) == 2 and scorings == [scorings[0]]
    assert max(row[0] for row in timeline["data"]) <= 1.5  # seconds scored: what the header claims, no more
    assert_clean(rec, port(demo))


def test_a_stream_of_unknown_length_is_refused(served, scorings):
    demo, client = served
    path = tmp_dir() / "unknown_length.flac"
    path.write_bytes(flac_claiming(flac_of_silence(60), 0))
    with RECORDER.watching() as rec, bounded(limit_s=5), pytest.raises(Exception, match="does not state its duration"):
        classify_via_client(client, path)
    assert scorings == []
    assert_clean(rec, port(demo))


def test_extremely_long_recordings_under_the_size_limit_are_refused(served, scorings):
    """30 minutes of 1 kHz 8-bit audio fit in 1.8 MB: refused by the duration limit, from the header."""
    demo, client = served
    path = wav(tmp_dir() / "thirty_minutes.wav", 1800, sr=1000, subtype="PCM_U8")
    assert path.stat().st_size < MAX_UPLOAD_MB * 2**20
    with (
        RECORDER.watching() as rec,
        bounded(limit_s=5),
        pytest.raises(Exception, match=r"The recording is 1800 s long; the limit is 30 s"),
    ):
        classify_via_client(client, path)
    assert scorings == []
    assert_clean(rec, port(demo))


def test_path_like_labels_are_scored_as_text_and_never_opened(served, scorings):
    demo, client = served
    labels = [
        "/etc/passwd",
        str(REPO / "pyproject.toml"),
        "../../../etc/shadow",
        "file:///etc/hostname",
        "~/.ssh/id_rsa",
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\x",
        "$(touch /tmp/pwned)",
        "{0.__class__}",
    ]
    path = wav(tmp_dir() / "clip.wav", 2.0)
    with RECORDER.watching() as rec, bounded():
        result, *_ = classify_via_client(client, path, "\n".join(labels), True, 10)
    assert {c["label"] for c in result["confidences"]} == set(labels)
    assert len(scorings) == 1 and scorings[0] in [p for p, _ in rec.opened]  # the upload itself was decoded, and seen
    opened = {os.path.realpath(os.path.expanduser(p)) for p, _ in rec.opened}
    for label in labels:
        assert os.path.realpath(os.path.expanduser(label)) not in opened, label
    assert not Path("/tmp/pwned").exists()
    assert_clean(rec, port(demo))


def test_too_many_or_too_long_labels_are_refused(app, served, scorings):
    import page_inputs  # space/page_inputs.py: the app fixture put space/ on sys.path

    demo, client = served
    path = wav(tmp_dir() / "clip.wav", 2.0)
    ten_thousand = "\n".join(f"label {i}" for i in range(10_000))
    cases = [
        (
            ten_thousand,
            rf"The labels text is {len(ten_thousand)} characters long; the limit is "
            rf"{page_inputs.MAX_LABELS_TEXT_CHARS} \({page_inputs.MAX_LABELS} labels",
        ),
        ("\n".join(f"l{i}" for i in range(150)), rf"Too many labels: 150 \(the limit is {page_inputs.MAX_LABELS}\)"),
        ("happy\n" + "x" * 101, r"Labels must be at most 100 characters"),
    ]
    for text, message in cases:
        with RECORDER.watching() as rec, bounded(), pytest.raises(Exception, match=message):
            classify_via_client(client, path, text)
        assert_clean(rec, port(demo))
    # 40 MB pasted into the box: refused before it is even split
    with bounded(limit_s=2), pytest.raises(gr.Error, match=r"The labels text is 41943040 characters long"):
        app.parse_labels("a;" * (20 * 2**20))
    assert scorings == []


@pytest.mark.parametrize("target", [str(REPO / "pyproject.toml"), "/etc/passwd"])
def test_a_file_path_smuggled_into_the_api_is_refused_unread(served, scorings, target):
    """Raw API call whose audio argument names a server file instead of an upload."""
    demo, _ = served
    payload = {"data": [{"path": target, "meta": {"_type": "gradio.FileData"}}, "happy", False, 1]}
    with RECORDER.watching() as rec, bounded():
        event = httpx.post(demo.local_url + "gradio_api/call/classify", json=payload, timeout=10).json()["event_id"]
        stream = httpx.get(demo.local_url + f"gradio_api/call/classify/{event}", timeout=30).text
    assert "event: error" in stream and "event: complete" not in stream, stream
    assert scorings == []
    assert os.path.realpath(target) not in {os.path.realpath(p) for p, _ in rec.opened}
    assert_clean(rec, port(demo))


# ------------------------------------------------------------------------------------------- under load
LOAD_REQUESTS = 40
LOAD_RSS_GROWTH_MB = 200.0  # measured: ~50 MB over the first 60 requests (allocator arenas), then flat
LOAD_HEAP_GROWTH_MB = 5.0  # Python objects still alive after the burst (measured: ~0.3 MB)


def test_forty_concurrent_requests_complete_without_errors_or_growth(tiny_model_dir, tmp_path):
    """A smaller run of benchmarks/space_load.py (200 requests there): 8 clients, 40 scorings, every one valid."""
    import torch

    bench = load_module("meralign_space_load_bench", REPO / "benchmarks" / "space_load.py")
    app = load_module("meralign_space_app_load_test", REPO / "space" / "app.py")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a shared machine (two spinning OpenMP threads stall when one is descheduled)
    try:
        result = bench.run_load(
            app,
            tiny_model_dir,
            requests=LOAD_REQUESTS,
            workers=8,
            timeout_s=120,
            work_dir=tmp_path,
            trace_python_heap=True,
        )
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("meralign_space_app_load_test", None)
    print(json.dumps({k: result[k] for k in ("wall_s", "latency_s", "rss_mb", "python_heap_growth_mb")}))
    assert result["errors"] == 0, result["error_samples"]
    assert result["completed"] == LOAD_REQUESTS
    assert result["latency_s"]["p99"] < 30, result["latency_s"]
    assert result["rss_mb"]["growth"] < LOAD_RSS_GROWTH_MB, result["rss_mb"]
    assert result["python_heap_growth_mb"] < LOAD_HEAP_GROWTH_MB, result["python_heap_growth_mb"]
