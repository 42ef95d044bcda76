"""Safe loading everywhere: no pickle, weights only as safetensors, nothing executed from data.

1. A static scan (ast) of every tracked Python file refuses the calls that can execute data or a shell:
   pickle-family imports, torch.load without weights_only=True, np.load that may unpickle, yaml.load without
   a safe loader, eval/exec/compile, subprocess with shell=True, os.system/os.popen, and trust_remote_code=True
   anywhere but the two places that load this project's own exported model on purpose. A self-test feeds the
   scanner one offending snippet per rule, so a rule that stopped matching fails loudly.
2. An exported model folder holds its weights as safetensors only, and exactly the remote-code files we ship.
3. Training checkpoints: the head is safetensors; resuming needs no torch.load(weights_only=False) (run with
   torch.load patched to refuse it); no registered pickled object is written.
4. Importing the remote-code modules in a fresh interpreter, with the network and `open` refused, succeeds:
   they do no file or network access at import time.
"""

from __future__ import annotations

import ast
import inspect
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import REMOTE_CODE

REPO = Path(__file__).resolve().parents[1]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# (file, enclosing function): the only calls that may pass trust_remote_code=True. Each loads a folder this
# project exported (the Space's model, the demo's freshly exported model, a library's model, the model the
# Space-path benchmark exports): code we ship.
TRUSTED_REMOTE_CODE = {
    ("benchmarks/space_path.py", "load_pipelines"),
    ("space/app.py", "load_fastest_pipeline"),
    ("meralign/demo/run.py", "classify_example"),
    ("meralign/library/model.py", "load_pipeline"),
}
WEIGHT_SUFFIXES = {
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".h5",
    ".msgpack",
    ".joblib",
    ".npy",
    ".npz",
    ".onnx",
}


# ------------------------------------------------------------------------------------------ 1. the scanner
@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _dotted(node: ast.AST) -> str:
    """`np.load` -> 'np.load', `torch.load` -> 'torch.load', other expressions -> ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, is_test: bool):
        self.path, self.is_test = path, is_test
        self.findings: list[Finding] = []
        self.remote_code_calls: list[tuple[str, str]] = []
        self._functions: list[str] = []

    def _flag(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule))

    def visit_FunctionDef(self, node):
        self._functions.append(node.name)
        self.generic_visit(node)
        self._functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] in PICKLE_MODULES:
                self._flag(node, f"imports {alias.name} (deserialising it can execute code)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.module and node.module.split(".")[0] in PICKLE_MODULES:
            self._flag(node, f"imports from {node.module}")
        self.generic_visit(node)

    def visit_Call(self, node):
        name = _dotted(node.func)
        tail = name.rsplit(".", 1)[-1]
        if name in ("torch.load",) and not _is_const(_keyword(node, "weights_only"), True):
            self._flag(node, "torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            allow = _keyword(node, "allow_pickle")
            # numpy's default is allow_pickle=False (asserted below); library code states it anyway
            if (allow is not None and not _is_const(allow, False)) or (allow is None and not self.is_test):
                self._flag(node, f"{name} without allow_pickle=False")
        if name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if not (loader is not None and _dotted(loader).rsplit(".", 1)[-1] in ("SafeLoader", "CSafeLoader")):
                self._flag(node, f"{name} without Loader=SafeLoader")
        if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
            self._flag(node, f"{name}")
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
            self._flag(node, f"{node.func.id}() executes a string")
        if name in ("os.system", "os.popen") or name.startswith(("os.exec", "os.spawn")):
            self._flag(node, f"{name} runs a shell or replaces the process")
        if name.startswith("subprocess.") and _is_const(_keyword(node, "shell"), True):
            self._flag(node, f"{name} with shell=True")
        if tail == "save_pretrained" and _is_const(_keyword(node, "safe_serialization"), False):
            self._flag(node, "save_pretrained(safe_serialization=False) writes pickled weights")
        if name == "torch.save" and not self.is_test:
            self._flag(node, "torch.save writes a pickle: save weights with safetensors")
        if _is_const(_keyword(node, "trust_remote_code"), True) and not self.is_test:
            self.remote_code_calls.append((self.path, self._functions[-1] if self._functions else "<module>"))
        self.generic_visit(node)


def scan_source(source: str, path: str) -> tuple[list[Finding], list[tuple[str, str]]]:
    scanner = _Scanner(path, is_test=path.startswith("tests/"))
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings, scanner.remote_code_calls


def tracked_python_files() -> list[Path]:
    """Every Python file the repository tracks (or, outside a checkout, every one but the venv and outputs)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.py"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        files = [REPO / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in REPO.rglob("*.py") if not {".venv", "outputs", ".git"} & set(p.relative_to(REPO).parts)]
    return sorted(p for p in files if p.is_file())


SELF_TEST = {
    "import pickle": "imports pickle",
    "import dill as d": "imports dill",
    "from joblib import load": "imports from joblib",
    "torch.load('x.pt')": "torch.load without weights_only=True",
    "torch.load('x.pt', weights_only=False)": "torch.load without weights_only=True",
    "np.load('x.npy')": "np.load without allow_pickle=False",
    "numpy.load('x.npz', allow_pickle=True)": "numpy.load without allow_pickle=False",
    "yaml.load(text)": "yaml.load without Loader=SafeLoader",
    "yaml.load(text, Loader=yaml.FullLoader)": "yaml.load without Loader=SafeLoader",
    "yaml.unsafe_load(text)": "yaml.unsafe_load",
    "eval('1 + 1')": "eval() executes a string",
    "exec(code)": "exec() executes a string",
    "os.system('ls')": "os.system runs a shell",
    "subprocess.run('ls', shell=True)": "subprocess.run with shell=True",
    "model.save_pretrained(d, safe_serialization=False)": "safe_serialization=False",
    "torch.save(model.state_dict(), 'w.pt')": "torch.save writes a pickle",
}
SAFE_SNIPPETS = [
    "torch.load('x.pt', weights_only=True)",
    "np.load('x.npy', allow_pickle=False)",
    "model.eval()",
    "yaml.safe_load(text)",
    "yaml.load(text, Loader=yaml.SafeLoader)",
    "subprocess.run(['ls'], check=True)",
    "re.compile('x')",
    "pipe.save_pretrained(d, safe_serialization=True)",
]


@pytest.mark.parametrize("snippet", list(SELF_TEST))
def test_the_scanner_flags_each_unsafe_call(snippet):
    findings, _ = scan_source(f"import numpy as np, torch, yaml, os, subprocess, numpy\n{snippet}\n", "meralign/x.py")
    assert any(SELF_TEST[snippet] in f.rule for f in findings), (snippet, [str(f) for f in findings])


def test_the_scanner_passes_safe_calls_and_finds_trust_remote_code():
    findings, _ = scan_source(
        "\n".join(["import numpy as np, torch, yaml, re, subprocess", *SAFE_SNIPPETS]), "meralign/x.py"
    )
    assert findings == []
    _, calls = scan_source(
        "def load():\n    return pipeline('t', model='m', trust_remote_code=True)\n", "meralign/x.py"
    )
    assert calls == [("meralign/x.py", "load")]
    # tests may rely on numpy's default, which never unpickles
    assert scan_source("import numpy as np\nnp.load('x.npy')\n", "tests/test_x.py")[0] == []
    assert inspect.signature(np.load).parameters["allow_pickle"].default is False


def test_no_unsafe_call_anywhere_in_the_repository():
    files = tracked_python_files()
    assert len(files) > 30 and REPO / "pipeline_meralign.py" in files and REPO / "space" / "app.py" in files
    findings, remote_code = [], []
    for path in files:
        found, calls = scan_source(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
        findings += found
        remote_code += calls
    assert not findings, "unsafe calls:\n" + "\n".join(map(str, findings))
    assert set(remote_code) == TRUSTED_REMOTE_CODE, sorted(remote_code)


NETWORK_MODULES = ("urllib", "http", "requests", "httpx", "socket", "huggingface_hub", "aiohttp", "ftplib")
# (file, function) of every network-capable import in the shipped modules, each on an explicit path only:
# the opt-in URL download of the pipeline (allow_urls=True), and the builder that reads a MERT config by Hub id
# (MERAlignModel.from_towers, a training-side call; from_pretrained and the pipeline never reach it), and the
# ONNX backend's fetch of a Hub model's onnx/ files (backend="onnx" with a Hub id; a local folder never reaches it).
NETWORK_IMPORTS = {
    ("audio_meralign.py", "_download"),
    ("modeling_meralign.py", "_read_mert_config"),
    ("onnx_meralign.py", "_model_folder"),
}


def _imports_by_function(tree: ast.AST, scope: str = "<module>"):
    """(innermost enclosing function, imported module) for every import in `tree`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _imports_by_function(node, node.name)
        elif isinstance(node, ast.Import):
            yield from ((scope, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield scope, node.module or ""
        else:
            yield from _imports_by_function(node, scope)


def test_remote_code_reaches_the_network_only_on_explicit_paths():
    uses = {
        (name, scope)
        for name in REMOTE_CODE
        for scope, module in _imports_by_function(ast.parse((REPO / name).read_text(encoding="utf-8")))
        if module.split(".")[0] in NETWORK_MODULES
    }
    assert uses == NETWORK_IMPORTS, sorted(uses)


# ------------------------------------------------------------------------------------ 2. exported weights
def test_exported_model_folder_holds_only_safetensors_and_the_shipped_code(tiny_model_dir):
    from safetensors import safe_open

    files = sorted(p.relative_to(tiny_model_dir).as_posix() for p in tiny_model_dir.rglob("*") if p.is_file())
    assert not [f for f in files if Path(f).suffix in WEIGHT_SUFFIXES], files
    weights = [f for f in files if f.endswith(".safetensors")]
    assert weights == ["model.safetensors"], files
    with safe_open(str(tiny_model_dir / "model.safetensors"), framework="pt") as f:
        assert len(list(f.keys())) > 50  # audio tower, head and text tower
    # trust_remote_code runs exactly the modules we ship, byte for byte
    assert sorted(f for f in files if f.endswith(".py")) == sorted(REMOTE_CODE)
    for name in REMOTE_CODE:
        assert (tiny_model_dir / name).read_bytes() == (REPO / name).read_bytes(), name
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert set(config["auto_map"].values()) <= {
        "configuration_meralign.MERAlignConfig",
        "modeling_meralign.MERAlignModel",
    }
    processor = json.loads((tiny_model_dir / "processor_config.json").read_text())
    assert processor["auto_map"] == {"AutoProcessor": "processing_meralign.MERAlignProcessor"}


# ---------------------------------------------------------------------------------- 3. training checkpoints
def test_training_checkpoints_resume_without_unsafe_torch_load(tmp_path, monkeypatch):
    import torch
    from fake_cache import make_cache

    from meralign.head import load_head
    from meralign.training.arguments import FitArguments
    from meralign.training.trainer import fit

    labels = ("happy", "sad", "calm", "angry")
    cache = make_cache({"a": {label: i for i, label in enumerate(labels)}}, n_tracks=24)
    vocab = tmp_path / "a.json"
    vocab.write_text(json.dumps({"labels": list(labels), "top_k": 1}))

    def args(**overrides):
        fields = dict(
            cache_dir="",
            output_dir=str(tmp_path / "run"),
            vocabularies=[f"a={vocab}"],
            batch_size=32,
            max_epochs=2,
            patience=5,
            head_hidden_size=32,
            head_dropout=0.0,
            log_with="none",
            progress=False,
        )
        return FitArguments(**{**fields, **overrides})

    fit(args(), cache)
    checkpoint = tmp_path / "run" / "checkpoint"
    names = sorted(p.name for p in checkpoint.iterdir())
    assert "model.safetensors" in names and not [n for n in names if n.startswith("custom_checkpoint")], names
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["scheduler"]["mode"] == "max"  # the LR scheduler travels as JSON, not as a pickle
    assert (tmp_path / "run" / "head.safetensors").is_file() and not list((tmp_path / "run").glob("*.bin"))

    real_load, calls = torch.load, []

    def weights_only_load(*a, **kw):
        calls.append(kw.get("weights_only"))
        if kw.get("weights_only") is not True:
            raise AssertionError(f"torch.load called with weights_only={kw.get('weights_only')!r}")
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", weights_only_load)
    summary = fit(args(max_epochs=3, resume=True), cache)
    assert calls and all(c is True for c in calls)  # optimizer and RNG states, loaded the safe way
    assert summary["epochs_run"] == 3
    head, _ = load_head(tmp_path / "run")
    assert sum(p.numel() for p in head.parameters()) > 0


# -------------------------------------------------------------------------------- 4. import-time behaviour
IMPORT_PROBE = r"""
import builtins, io, json, os, socket, sys
sys.dont_write_bytecode = True
folder = {folder!r}
# what the modules import, loaded first: the probe is about the modules' own top-level code
import numpy, torch, torch.nn.functional
from transformers import (AutoModel, BatchFeature, BertConfig, BertModel, HubertConfig, HubertModel,
                          PretrainedConfig, PreTrainedModel, ProcessorMixin)
from transformers.masking_utils import create_bidirectional_mask
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import ModelOutput

violations = []

def refuse(what):
    def refused(*args, **kwargs):
        violations.append(what)
        raise RuntimeError(what + " at import time")
    return refused

def audit(event, args):
    if event.startswith(("socket.", "urllib.", "http.", "subprocess.", "os.system", "os.exec", "os.spawn",
                         "os.posix_spawn")):
        violations.append(event)
        raise RuntimeError(event + " at import time")
    if event == "open":
        caller = sys._getframe(1).f_code.co_filename
        if caller.startswith("<frozen importlib"):
            return  # the import system reading a module's code, not the module reading a file
        violations.append("open " + repr(args[0]))

for name in ("socket", "create_connection", "getaddrinfo", "create_server"):
    setattr(socket, name, refuse("socket." + name))
builtins.open = io.open = refuse("open")
sys.addaudithook(audit)

sys.path.insert(0, os.path.join(folder, "flat"))
import configuration_meralign, audio_meralign, modeling_meralign, pipeline_meralign   # absolute fallbacks
import processing_meralign, cpu_meralign, scoring_meralign
sys.path.insert(0, folder)
import shipped.processing_meralign, shipped.modeling_meralign                           # relative imports
import shipped.pipeline_meralign
print("RESULT " + json.dumps({{"violations": violations, "task": pipeline_meralign.TASK,
                               "registered": pipeline_meralign.TASK in PIPELINE_REGISTRY.get_supported_tasks()}}))
"""


def test_remote_code_does_no_file_or_network_access_at_import(run_isolated, tmp_path):
    """The shipped modules imported in a fresh interpreter (no project on sys.path), both as flat modules and as
    a package like transformers_modules, with sockets and `open` refused and an audit hook recording any file
    opened, any socket, URL or subprocess event."""
    (tmp_path / "flat").mkdir()
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "__init__.py").write_text("")
    for name in REMOTE_CODE:
        shutil.copy(REPO / name, tmp_path / "flat" / name)
        shutil.copy(REPO / name, tmp_path / "shipped" / name)
    result = run_isolated(IMPORT_PROBE.format(folder=str(tmp_path)), timeout=240)
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    report = json.loads(line[len("RESULT ") :])
    assert report["violations"] == [], report
    assert report["task"] == "zero-shot-music-emotion" and report["registered"]
    # the probe itself works: the same hook does catch a file read and a socket
    probe_check = run_isolated(
        IMPORT_PROBE.format(folder=str(tmp_path)).replace(
            "import shipped.pipeline_meralign",
            "import shipped.pipeline_meralign\n"
            "try:\n    open(os.__file__)\nexcept RuntimeError:\n    pass\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9))\nexcept RuntimeError:\n    pass",
        ),
        timeout=240,
    )
    caught = json.loads(next(x for x in probe_check.stdout.splitlines() if x.startswith("RESULT "))[7:])["violations"]
    assert "open" in caught and "socket.create_connection" in caught, caught
