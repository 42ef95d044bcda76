"""The training curves figure: loss and validation macro F1 per epoch."""

from __future__ import annotations

import json
import os
from pathlib import Path


def plot_curves(metrics_jsonl: Path, png: Path) -> None:
    """Training loss and validation macro F1 per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    if not records:
        return
    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("train_loss", "train_objective", "train_regularizer", "train_affect"):
        left.plot(epochs, [r[key] for r in records], label=key.replace("train_", ""))
    left.set_xlabel("epoch")
    left.set_title("training loss")
    left.legend()
    for key in sorted(k for k in records[0] if k.startswith("val_macro_f1")):
        right.plot(epochs, [r[key] for r in records], label=key.replace("val_macro_f1", "mean").replace("mean/", ""))
    right.set_xlabel("epoch")
    right.set_title("validation macro F1 (training datasets)")
    right.legend(fontsize=7)
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
