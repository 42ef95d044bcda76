#!/usr/bin/env python
"""meralign's command line: build, evaluate and publish zero-shot music emotion models.

    python train.py <command> [--flags | config.yaml]

Commands (each has --help):
  align     embed label vocabularies and align them with Mean Shift clustering
  extract   cut datasets into segments and cache MERT features (resumable; `accelerate launch` to distribute)
  fit       train the projection head on cached features
  evaluate  score a trained head on cached features (segment and song level, with chance baselines)
  protocol  the leave-one-dataset-out table: train on two datasets, test zero-shot on the third
  transfer  choose training settings by transfer to unseen words, on training data only: train on one
            dataset, score the others' validation tracks in their own words
  export    write a Hub-ready model folder loadable with pipeline(..., trust_remote_code=True)
  push      publish the model (and a Gradio Space) to the Hub (--dry-run to preview)
  demo      the whole thing offline, on a synthetic corpus with a tiny random tower

This file only dispatches; the work lives in the `meralign` package.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, function taking argv). Imported lazily so `--help` stays fast.
COMMANDS = {
    "align": ("meralign.alignment.cli", "align_main"),
    "extract": ("meralign.features.cli", "extract_main"),
    "fit": ("meralign.training.trainer", "fit_main"),
    "evaluate": ("meralign.evaluation.cli", "evaluate_main"),
    "protocol": ("meralign.evaluation.cli", "protocol_main"),
    "transfer": ("meralign.evaluation.cli", "transfer_main"),
    "export": ("meralign.publish.export", "export_main"),
    "push": ("meralign.publish.push", "push_main"),
    "demo": ("meralign.demo.run", "demo_main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[command]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
