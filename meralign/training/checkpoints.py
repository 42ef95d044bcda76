"""Checkpoints of head training: written atomically every epoch, resumed after a kill.

Each epoch's state goes into a fresh folder that is renamed into place (`checkpoint/`, the previous one kept
as `checkpoint.old/` until the rename is done), so a kill at any moment leaves a complete checkpoint. The
learning-rate scheduler's state travels as JSON in `trainer_state.json`: accelerate reloads registered objects
with a pickle-based `torch.load(weights_only=False)`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from meralign.files import atomic_write_json, write_error

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


class Checkpoints:
    """The checkpoints of one training run in `output_dir`, written and read through `accelerator`."""

    def __init__(self, output_dir: Path, accelerator):
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator

    def exists(self) -> bool:
        return (self.output_dir / STATE_FILE).exists()

    def save(self, state: dict, scheduler, save_best: Callable[[], None] | None) -> None:
        """The best head (`save_best`, when this epoch improved), then the full training state.

        A failed write (disk full...) leaves the previous checkpoint and best head as they were, removes the
        partial folder and raises an OSError saying so (same errno)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        tmp = self.output_dir / "checkpoint.tmp"
        try:
            if save_best is not None and acc.is_main_process:
                save_best()
            if acc.is_main_process and tmp.exists():
                shutil.rmtree(tmp)
            acc.wait_for_everyone()
            acc.save_state(str(tmp))
            acc.wait_for_everyone()
            if acc.is_main_process:
                atomic_write_json(tmp / STATE_FILE, {**state, "scheduler": scheduler.state_dict()})
                self._publish(tmp, state)
        except OSError as err:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(
                err,
                f"could not write the checkpoint of epoch {state['epoch'] - 1} in {str(self.output_dir)!r}",
                f"{self._survivors()}: fix the cause (e.g. free disk space) and rerun with --resume",
            ) from err
        acc.wait_for_everyone()

    def resume(self, state: dict, scheduler) -> dict:
        """The state of the last complete checkpoint, loaded into the accelerator's objects and `scheduler`
        (`state` unchanged when there is none)."""
        final = self.output_dir / "checkpoint"
        if not (final / STATE_FILE).is_file():
            old = self.output_dir / "checkpoint.old"  # killed between the two renames
            final = old if (old / STATE_FILE).is_file() else None
        if final is None:
            logger.warning("--resume: no complete checkpoint in %s, starting from scratch", self.output_dir)
            return state
        self.accelerator.load_state(str(final))
        state = json.loads((final / STATE_FILE).read_text())
        scheduler.load_state_dict(state.pop("scheduler"))
        # metrics.jsonl may hold epochs logged after this checkpoint: keep only the ones it covers
        log = self.output_dir / "metrics.jsonl"
        if self.accelerator.is_main_process and log.exists():
            kept = [
                line for line in log.read_text().splitlines() if line and json.loads(line)["epoch"] < state["epoch"]
            ]
            log.write_text("".join(line + "\n" for line in kept))
        print(
            f"resumed from epoch {state['epoch']} (best val macro-F1 {state['best']:.4f} at epoch "
            f"{state['best_epoch']})",
            flush=True,
        )
        return state

    def _publish(self, tmp: Path, state: dict) -> None:
        old = self.output_dir / "checkpoint.old"
        final = self.output_dir / "checkpoint"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)  # killed between the two renames: resume falls back to checkpoint.old
        shutil.rmtree(old, ignore_errors=True)
        atomic_write_json(self.output_dir / STATE_FILE, state)

    def _survivors(self) -> str:
        """What survives a failed checkpoint, for the error message."""
        for name in ("checkpoint", "checkpoint.old"):
            path = self.output_dir / name / STATE_FILE
            if path.is_file():
                try:
                    epochs = json.loads(path.read_text())["epoch"]
                except (OSError, ValueError, KeyError):
                    continue
                return f"the previous checkpoint ({name}/, {epochs} epoch(s) done) and best head are intact"
        return "no earlier checkpoint exists, so --resume starts from scratch"
