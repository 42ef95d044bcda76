"""The head trained into a label space, on the demo's cached corpora: what docs/label-space.md's 3-seed table reports.

    make demo                                                     # the corpora and caches, once
    python benchmarks/label_space_heads.py default '{}'
    python benchmarks/label_space_heads.py ens_w2 '{"label_space": "recipe.json", "regularizer": "none"}'
    python benchmarks/label_space_heads.py --summary                # the table over every result so far

For each seed: the leave-one-dataset-out protocol (head and ridge baseline), the transfer criterion
(meralign/evaluation/transfer.py) and a final model on all three training datasets, with the demo's training
settings and the given FitArguments overrides. Prints one line per seed (validation F1, transfer over chance,
zero-shot mean and worst, scores under 2x chance, scores behind the ridge baseline, in-domain mean, valence and
arousal Spearman on the held-out tracks) and writes
benchmarks/results/label_space_heads/<name>.json. Recipes: a JSON label-space recipe like
meralign/alignment/label_space_affect.json with other `factors`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).absolute().parent.parent
sys.path.insert(0, str(ROOT))


def seed_scores(name: str, seed: int, overrides: dict, demo_dir: Path, work: Path) -> dict:
    from meralign.data.synthetic.cues import EMOTION_AFFECT
    from meralign.demo.run import DemoArguments, feature_cache_dir, fit_arguments
    from meralign.evaluation.affect import affect_agreement
    from meralign.evaluation.protocol import ProtocolArguments, run_protocol
    from meralign.evaluation.records import read_settings
    from meralign.evaluation.transfer import transfer_validation
    from meralign.features.datasets import CacheDatasets
    from meralign.head import load_head
    from meralign.training.trainer import fit
    from meralign.vocabularies import SYNTHETIC, SYNTHETIC_TRAINING, SYNTHETIC_ZERO_SHOT

    cache = feature_cache_dir(DemoArguments(), seed, demo_dir)  # the default `make demo` wrote
    datasets = CacheDatasets(cache)
    args = replace(fit_arguments(DemoArguments(), seed, cache), **overrides)
    run_dir = work / name / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    protocol = ProtocolArguments(datasets=list(SYNTHETIC_TRAINING), zero_shot_datasets=list(SYNTHETIC_ZERO_SHOT))
    records = read_settings(run_protocol(replace(args, output_dir=str(run_dir)), protocol, datasets))
    heads = [p for p in sorted(run_dir.glob("heldout-*")) if not p.name.endswith("-linear")]
    val = [load_head(p)[1]["best_val_macro_f1"] for p in heads]
    f1 = lambda r: r.metrics["segment"]["macro_f1"]  # noqa: E731
    linear = {(tuple(r.train), r.test): f1(r) for r in records if r.extra.get("model") == "linear"}
    head = [r for r in records if r.extra.get("model") == "head"]
    zero_shot = [(r, r.baselines("segment", "macro_f1")["random_topk"]) for r in head if r.kind == "zero-shot"]
    transfer = transfer_validation(
        replace(args, output_dir=str(run_dir / "transfer")), datasets, list(SYNTHETIC_TRAINING)
    )
    final = run_dir / "final"
    fit(replace(args, output_dir=str(final), train_datasets=list(SYNTHETIC_TRAINING)), datasets)
    model, saved = load_head(final)
    held_out = datasets.get("synth-zeroshot", SYNTHETIC["synth-zeroshot"], saved["pooling"])
    affect = affect_agreement(model, saved, held_out, EMOTION_AFFECT) if saved.get("affect_calibration") else {}
    return {
        "val": float(np.mean(val)),
        "transfer_over_chance": transfer["mean_over_chance"],
        "transfer_worst": transfer["worst_over_chance"],
        "zero_shot_mean": float(np.mean([f1(r) for r, _ in zero_shot])),
        "everyday_min": float(min(f1(r) for r, _ in zero_shot if r.test.startswith("everyday"))),
        "worst_over_chance": float(min(f1(r) / c for r, c in zero_shot)),
        "below_2x_chance": sum(f1(r) < 2 * c for r, c in zero_shot),
        "behind_ridge": sum(f1(r) <= linear.get((tuple(r.train), r.test), -1) for r, _ in zero_shot),
        "in_domain": float(np.mean([f1(r) for r in head if r.kind == "in-domain"])),
        **{axis: affect[axis]["spearman"] for axis in affect},
        "affect_readout": "anchors" if saved.get("affect_calibration", {}).get("anchors") else "projection",
    }


RESULTS = ROOT / "benchmarks" / "results" / "label_space_heads"
# The two selection criteria (computed on training data only) and what they are meant to predict.
CRITERIA = ("val", "transfer_over_chance")
COLUMNS = (
    "val",
    "transfer_over_chance",
    "zero_shot_mean",
    "everyday_min",
    "worst_over_chance",
    "below_2x_chance",
    "behind_ridge",
    "in_domain",
    "valence",
    "arousal",
    "affect_readout",
)


def summary(results: dict[str, dict], baseline: str = "default") -> str:
    """One row per configuration (means over its seeds; counts summed), with the paired t statistic of its transfer
    criterion against `baseline`'s over the seeds both ran (the selection rule: a configuration replaces the
    baseline only where that t passes a one-sided 5% test); then how well each selection criterion ranks the
    configurations by mean zero-shot F1 (Spearman over configurations, and over every (configuration, seed) run).

    `results`: name -> the JSON this benchmark writes ({"overrides", "seeds": {seed: scores}})."""
    from scipy.stats import spearmanr

    rows = {name: list(r["seeds"].values()) for name, r in sorted(results.items())}
    header = "| configuration | seeds | " + " | ".join(COLUMNS) + f" | transfer vs {baseline}: paired t |"
    lines = [header, "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for name, runs in rows.items():
        cells = [_mean_cell([run.get(column) for run in runs]) for column in COLUMNS]
        t = paired_t(results[name]["seeds"], results[baseline]["seeds"]) if baseline in results else None
        shown = "" if t is None or name == baseline else f"{t:+.2f}"
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {shown} |")
    lines.append("")
    runs = [run for seeds in rows.values() for run in seeds if all(c in run for c in CRITERIA)]
    complete = [name for name, seeds in rows.items() if all(all(c in run for c in CRITERIA) for run in seeds)]
    for criterion in CRITERIA:
        means = [
            (np.mean([r[criterion] for r in rows[n]]), np.mean([r["zero_shot_mean"] for r in rows[n]]))
            for n in complete
        ]
        by_config = spearmanr(*zip(*means)).statistic if len(means) > 2 else float("nan")
        by_run = (
            spearmanr([r[criterion] for r in runs], [r["zero_shot_mean"] for r in runs]).statistic
            if len(runs) > 2
            else float("nan")
        )
        lines.append(
            f"{criterion} vs zero-shot mean: Spearman {by_config:.2f} over {len(complete)} configurations, "
            f"{by_run:.2f} over {len(runs)} runs"
        )
    return "\n".join(lines)


def paired_t(seeds: dict, baseline: dict, key: str = "transfer_over_chance") -> float | None:
    """t statistic of the mean paired difference of `key` between two configurations over their common seeds
    (None with fewer than 2 seeds holding it, or no spread)."""
    common = [s for s in seeds if s in baseline and key in seeds[s] and key in baseline[s]]
    differences = np.array([seeds[s][key] - baseline[s][key] for s in common])
    if len(differences) < 2 or not differences.std(ddof=1) > 0:
        return None
    return float(differences.mean() / (differences.std(ddof=1) / np.sqrt(len(differences))))


def _mean_cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if all(isinstance(v, str) for v in values):
        return "/".join(dict.fromkeys(values))
    if all(isinstance(v, int) for v in values):  # counts: the total over seeds
        return str(sum(values))
    return f"{np.mean(values):.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?")
    parser.add_argument("overrides", nargs="?", help='FitArguments fields as JSON, e.g. \'{"regularizer": "none"}\'')
    parser.add_argument(
        "--summary", action="store_true", help="Print the table over every result in " + str(RESULTS.relative_to(ROOT))
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "outputs" / "demo")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "meralign_label_space_heads")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary({p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}))
        return 0
    if not args.name or args.overrides is None:
        parser.error("give a NAME and OVERRIDES (JSON), or --summary")
    overrides = json.loads(args.overrides)
    result = {}
    for seed in args.seeds:
        result[seed] = seed_scores(args.name, seed, overrides, args.demo_dir, args.work_dir)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in result[seed].items()}
        print(args.name, seed, json.dumps(shown), flush=True)
    out = RESULTS / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"overrides": overrides, "seeds": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
