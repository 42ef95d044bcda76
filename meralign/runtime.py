"""Devices and processes: the accelerate `Accelerator` every command uses, and the launch check."""

from __future__ import annotations

import os

MIXED_PRECISIONS = ("no", "bf16", "fp16")  # accelerate's; applied on GPUs only (see make_accelerator)


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
            f"{world} processes were launched (WORLD_SIZE={world}) but the accelerator sees "
            f"{accelerator.num_processes}: "
            "on a machine without GPUs launch with `accelerate launch --multi_gpu --num_processes N` (or torchrun) "
            "and pass Accelerator(cpu=True), or let meralign create the accelerator"
        )
