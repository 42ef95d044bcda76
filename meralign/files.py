"""Durable file writes: readers see the old file or the new one, never a partial one; failures say what is kept."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def fsync_dir(path) -> None:
    """Persist a folder's entries (a rename is durable only once its folder is synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path, writer) -> None:
    """Write `path` with `writer(file)`, then flush and fsync, so a later rename publishes real bytes."""
    with open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def write_error(err: OSError, what: str, advice: str) -> OSError:
    """An OSError that says what could not be written, why, and what is safe to do next; it keeps `err`'s errno
    (ENOSPC stays ENOSPC) so callers can still tell a full disk from other failures."""
    message = f"{what}: {err.strerror or err}; {advice}"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual permissions
        write_synced(tmp, lambda f: f.write(data))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
