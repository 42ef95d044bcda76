"""Shared fixtures: the tiny model built once per session, and Python run in a fresh, isolated interpreter.

The isolated interpreter is what a Hub user has: the installed libraries, but not this project. That matters
because the root modules are shipped as remote code; a test that can silently import the local copy (through
the repo root on `sys.path` or an editable install) proves nothing about the shipped files.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Before anything imports huggingface_hub/transformers: nothing in the tests may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# Every top-level name this project provides; none may be importable in the isolated interpreter.
PROJECT_MODULES = ("meralign", *sorted(p.stem for p in REPO_ROOT.glob("*.py")))

# Prepended to the code run in isolation. The interpreter starts with `-I -S`: no PYTHONPATH, no user site,
# no script directory or cwd on sys.path, and no `site` processing at all. This header then adds the
# parent's site-packages folders itself, processing their .pth files like `site` does except those of
# editable installs: `pip install -e .` writes `__editable__.<project>-<version>.pth`, which either lists
# the repo root (setuptools' compat/"static .pth" mode) or imports `__editable___<project>_finder` and
# installs a meta-path finder that maps the project's modules to the repo (the default for this layout).
# Legacy `setup.py develop` installs list the repo root in `easy-install.pth`. Skipping `__editable__`
# files and lines and dropping the repo root from sys.path neutralises all three. The header then checks
# that no project module can be found, so a new install mechanism fails loudly here instead of passing
# a test against the local files.
_ISOLATION_HEADER = """
import importlib.util as _ilu
import os as _os
import sys as _sys


def _add_site_dirs(site_dirs, hidden_root):
    for site_dir in site_dirs:
        if site_dir not in _sys.path:
            _sys.path.append(site_dir)
        for name in sorted(_os.listdir(site_dir)):
            if not name.endswith(".pth") or name.startswith("__editable__"):
                continue
            with open(_os.path.join(site_dir, name), encoding="utf-8") as pth:
                lines = [line.rstrip() for line in pth]
            for line in lines:
                if not line or line.startswith("#") or "__editable__" in line:
                    continue
                if line.startswith(("import ", "import\\t")):
                    exec(line)
                    continue
                path = _os.path.realpath(_os.path.join(site_dir, line))
                if _os.path.isdir(path) and path not in _sys.path:
                    _sys.path.append(path)
    _sys.path[:] = [p for p in _sys.path if _os.path.realpath(p or _os.curdir) != hidden_root]


_add_site_dirs(SITE_DIRS, HIDDEN_ROOT)
for _name in PROJECT_MODULES:
    _spec = _ilu.find_spec(_name)
    if _spec is not None:
        raise SystemExit(f"isolation failed: project module {_name!r} is importable from {_spec.origin}")
del _add_site_dirs, _name, _spec
"""


def _site_dirs() -> list[str]:
    """The parent's site-packages folders (the venv's, plus the base ones when the venv includes them)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def _isolated_env(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    """A clean environment: offline, and every Hugging Face cache (remote-code modules included) in `home`."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "HF_HOME": str(home / "hf_home"),
        "HF_MODULES_CACHE": str(home / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LC_ALL": "C.UTF-8",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    env.update(extra or {})
    return env


RunIsolated = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def run_isolated(tmp_path_factory: pytest.TempPathFactory) -> RunIsolated:
    """`run_isolated(code, *, cwd=None, env=None, timeout=300)`: run `code` in a fresh, isolated interpreter.

    The project is not importable there (checked before `code` runs), HF_HOME and HF_MODULES_CACHE point into
    a new temp folder, and the hub is offline. Fails the test with the process output on a non-zero exit;
    returns the CompletedProcess (text mode) otherwise.
    """
    header = (
        f"SITE_DIRS = {_site_dirs()!r}\nHIDDEN_ROOT = {os.path.realpath(REPO_ROOT)!r}\n"
        f"PROJECT_MODULES = {PROJECT_MODULES!r}\n{_ISOLATION_HEADER}\n"
    )

    def run(code: str, *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
        home = tmp_path_factory.mktemp("isolated_home")
        workdir = Path(cwd) if cwd is not None else home
        script = home / "isolated_main.py"
        script.write_text(header + textwrap.dedent(code), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-I", "-S", str(script)],
            cwd=workdir,
            env=_isolated_env(home, env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            pytest.fail(
                f"isolated process exited with {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}"
                f"\n--- stderr ---\n{result.stderr[-8000:]}",
                pytrace=False,
            )
        return result

    return run


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny MERT-shaped MERAlignModel with the real MiniLM text tower, in eval mode. Do not modify it."""
    from meralign.testing import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_1s():
    """A tiny model (seed 0) scoring 1 s segments, for tests on short clips. Do not modify it."""
    from meralign.testing import build_tiny_model

    return build_tiny_model(seed=0, segment_seconds=1.0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_model` saved with its feature extractor and tokenizer (safetensors + remote code)."""
    from meralign.publish.folder import save_model_folder

    out = tmp_path_factory.mktemp("tiny_model")
    save_model_folder(tiny_model, out)
    return out


@pytest.fixture(scope="session")
def tiny_model_onnx(tiny_model, tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, info): a copy of `tiny_model_dir` with onnx/ exported into it (and the dynamic and static int8
    variants where they pass the accuracy bar; the static one calibrated on two synthetic clips, which
    CHECK_CLIPS do not share), and the export's info. Do not modify it."""
    import shutil

    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (pip install onnxscript)")
    from meralign.data.synthetic.render import render_clip
    from meralign.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("tiny_model_onnx") / "model"
    shutil.copytree(tiny_model_dir, folder)
    rate = tiny_model.config.sampling_rate
    calibration = [
        render_clip(e, seed=50 + i, seconds=12.0, sampling_rate=rate) for i, e in enumerate([["joyful"], ["sad"]])
    ]
    return folder, export_onnx(tiny_model, folder, quantized=True, calibration_audio=calibration)
