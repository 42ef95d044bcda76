"""The remote-code modules import only what a Hub user has: torch, transformers, numpy, the standard library and
each other. Anything else (soundfile, scipy, onnxruntime, huggingface_hub, ...) is optional and imported inside
a function or a `try` block, where transformers' requirement check does not look."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from helpers import REMOTE_CODE, REPO_ROOT

ALLOWED_PACKAGES = {"torch", "transformers", "numpy"}
SIBLINGS = {Path(name).stem for name in REMOTE_CODE}


def top_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of each import a module runs when it is imported: module level, outside `try`
    and outside functions and classes' methods (a class body runs at import, so it counts)."""
    found = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." if node.level else (node.module or "").split(".")[0]))
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            elif isinstance(node, ast.If):  # e.g. `if TYPE_CHECKING:` blocks still count
                visit(node.body)
                visit(node.orelse)

    visit(ast.parse(source).body)
    return found


def forbidden_imports(source: str) -> list[str]:
    """Top-level imports outside the stdlib, torch, transformers, numpy and the sibling remote-code modules."""
    allowed = ALLOWED_PACKAGES | SIBLINGS | set(sys.stdlib_module_names) | {".", "__future__"}
    return [f"line {line}: {name}" for line, name in top_level_imports(source) if name not in allowed]


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_imports_only_what_a_hub_user_has(name):
    assert forbidden_imports((REPO_ROOT / name).read_text(encoding="utf-8")) == []


def test_the_check_catches_a_forbidden_import():
    source = (REPO_ROOT / "pipeline_meralign.py").read_text(encoding="utf-8")
    assert forbidden_imports(source + "\nimport pandas\n") == [f"line {len(source.splitlines()) + 2}: pandas"]
    assert forbidden_imports("from scipy.signal import resample_poly\n") == ["line 1: scipy"]
    assert forbidden_imports("class A:\n    import soundfile\n") == ["line 2: soundfile"]
    # where optional packages belong: inside functions and try blocks
    assert (
        forbidden_imports(
            "def f():\n    import soundfile\ntry:\n    import onnxruntime\nexcept ImportError:\n    pass\n"
        )
        == []
    )


def test_remote_code_imports_siblings_relatively_with_an_absolute_fallback():
    """Shipped next to each other, the modules load as a package (transformers_modules.<repo>) and import each
    other relatively; locally they are top-level modules: the `try: from .x` / `except ImportError: from x`
    pair covers both, and any other form would break one of them."""
    for name in REMOTE_CODE:
        tree = ast.parse((REPO_ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in SIBLINGS and node.level == 0:
                assert any(isinstance(t, ast.Try) and node in ast.walk(t) for t in tree.body), (name, node.lineno)
