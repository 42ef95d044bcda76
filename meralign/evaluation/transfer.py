"""Transfer to unseen words, measured on training data only: the criterion for choosing how a head is trained.

In-domain validation F1 does not predict zero-shot: on the demo's corpora the label space with the best
validation F1 had nearly the worst zero-shot scores (docs/label-space.md). This measures transfer itself
without touching a held-out dataset or a zero-shot-only vocabulary: for each training dataset A, a head trained
on A alone scores every other training dataset B's VALIDATION tracks in B's words, which it never saw.

In a leave-one-dataset-out fold with training datasets {A, B}, the pairs A -> B and B -> A belong to that fold;
over all folds each ordered pair of datasets belongs to exactly one, so the mean over all pairs is the mean of
the folds' own criteria.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from meralign.evaluation.scoring import score_split
from meralign.features.datasets import CacheDatasets
from meralign.files import atomic_write_json
from meralign.head import load_head
from meralign.training.arguments import FitArguments
from meralign.training.trainer import fit


def transfer_validation(fit_args: FitArguments, datasets=None, names: list[str] | None = None) -> dict:
    """Train one head per dataset of `names` (in `fit_args.output_dir/transfer-from-<name>`) and score the others'
    validation splits in their own words.

    Writes `transfer.json` in `fit_args.output_dir` and returns it: "pairs" (one {"train", "test", "macro_f1",
    "chance", "over_chance"} per pair), "mean_over_chance" and "worst_over_chance". Macro F1 is at segment level
    and taken over its random top-k chance, so vocabularies of different sizes weigh alike. `datasets`: a
    CacheDatasets, a loaded cache, or None (`fit_args.cache_dir`).
    """
    datasets = CacheDatasets.of(datasets if datasets is not None else fit_args.cache_dir)
    names = list(names or fit_args.train_datasets or datasets.names())
    if len(names) < 2:
        raise ValueError(f"names must hold at least 2 datasets (train on one, test on another), got {names}")
    vocabularies = datasets.vocabularies(names, fit_args.vocabularies)
    pairs = []
    for source in names:
        run = replace(
            fit_args, train_datasets=[source], output_dir=str(Path(fit_args.output_dir) / f"transfer-from-{source}")
        )
        fit(run, datasets)
        head, saved = load_head(run.output_dir)
        for target in names:
            if target == source:
                continue
            data = datasets.get(target, vocabularies[target], saved["pooling"])
            scored = score_split(head, saved, data, "validation")
            f1 = float(scored["segment"]["macro_f1"])
            chance = float(scored["chance"]["segment"]["random_topk"]["macro_f1"])
            pairs.append(
                {"train": source, "test": target, "macro_f1": f1, "chance": chance, "over_chance": f1 / chance}
            )
    ratios = [p["over_chance"] for p in pairs]
    result = {"pairs": pairs, "mean_over_chance": float(np.mean(ratios)), "worst_over_chance": float(min(ratios))}
    atomic_write_json(Path(fit_args.output_dir) / "transfer.json", result)
    return result


def transfer_markdown(result: dict) -> str:
    """The criterion as a table: one row per (trained on, scored in) pair, then the mean and the worst."""
    lines = [
        "| trained on | scored in its words | macro F1 (validation) | chance | over chance |",
        "|---|---|---|---|---|",
    ]
    for p in result["pairs"]:
        lines.append(
            f"| {p['train']} | {p['test']} | {p['macro_f1']:.3f} | {p['chance']:.3f} | {p['over_chance']:.2f}x |"
        )
    lines.append(f"\nmean {result['mean_over_chance']:.2f}x chance, worst {result['worst_over_chance']:.2f}x")
    return "\n".join(lines)
