"""What a push sends: files (from disk or generated) and the Hub calls that carry them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PushFile:
    """One file of a commit: from a local path or generated content."""

    path_in_repo: str
    local_path: Path | None = None
    content: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else self.local_path.stat().st_size

    @property
    def source(self) -> str:
        return "generated" if self.content is not None else str(self.local_path)

    def operation(self):
        from huggingface_hub import CommitOperationAdd

        return CommitOperationAdd(
            self.path_in_repo, self.content if self.content is not None else str(self.local_path)
        )


@dataclass
class PushAction:
    """One Hub call: `create_repo` or `create_commit` (with its files). `result` is filled by a real push."""

    call: str
    kwargs: dict[str, Any]
    files: list[PushFile] = field(default_factory=list)
    result: str | None = None

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        lines = [f"{self.call}({args})"]
        lines += [f"    + {f.path_in_repo}  ({f.size:,} bytes, {f.source})" for f in self.files]
        return "\n".join(lines)
