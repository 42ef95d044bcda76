"""The leave-one-dataset-out protocol: for each dataset, train on the others and test zero-shot on it.

Every held-out run trains the head and, beside it, the linear baseline (ridge regression into the same label
space, meralign/training/linear.py); both are scored in-domain (the training datasets' own test tracks),
zero-shot on the held-out dataset, and on every zero-shot-only vocabulary (all its tracks). One
`CacheDatasets` serves every run, so each dataset is read from the cache once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from meralign.evaluation.records import read_settings
from meralign.evaluation.report import PROTOCOL_NOTES, results_markdown
from meralign.evaluation.scoring import score_split, to_record
from meralign.features.datasets import CacheDatasets
from meralign.files import atomic_write_json, atomic_write_text
from meralign.head import load_head
from meralign.training.arguments import FitArguments
from meralign.training.linear import fit_linear_baseline
from meralign.training.trainer import fit
from meralign.vocabularies import resolve

MODELS = ("head", "linear")


@dataclass
class ProtocolArguments:
    """Leave-one-dataset-out: for each dataset, train on the others and test zero-shot on it."""

    datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "The datasets that take turns being held out (default: all in the cache, minus "
            "--zero_shot_datasets)."
        },
    )
    zero_shot_datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Vocabularies never trained on, scored by every model on all their tracks: a dataset of the "
            "cache, or a vocabulary that renames another dataset's labels (e.g. the demo's everyday-1)."
        },
    )
    eval_split: str = field(
        default="test",
        metadata={
            "help": "Split scored for in-domain and held-out datasets ('test' or 'all'); zero-shot-only "
            "datasets are scored on all their tracks."
        },
    )
    linear_baseline: bool = field(
        default=True, metadata={"help": "Also fit and score the ridge-regression baseline in every held-out run."}
    )


def run_protocol(fit_args: FitArguments, protocol: ProtocolArguments, datasets=None) -> dict:
    """Train and score every setting; writes protocol.json, protocol_details.json and protocol.md.

    `datasets`: a CacheDatasets, a loaded cache, or None (`fit_args.cache_dir`)."""
    datasets = CacheDatasets.of(datasets if datasets is not None else fit_args.cache_dir)
    zero_shot_only = [resolve(name) for name in protocol.zero_shot_datasets]
    names = protocol.datasets or sorted(set(datasets.names()) - {v.tracks_of or v.name for v in zero_shot_only})
    if len(names) < 2:
        raise ValueError(f"the protocol needs at least 2 datasets to hold out in turn, got {names}")
    tracks = sorted({v.tracks_of or v.name for v in zero_shot_only} | set(names))
    vocabularies = datasets.vocabularies(tracks, fit_args.vocabularies)
    root = Path(fit_args.output_dir)
    records, details = [], []
    for held_out in names:
        train = [n for n in names if n != held_out]
        print(f"\n=== train on {' + '.join(train)}; zero-shot test on {held_out} ===", flush=True)
        run = replace(fit_args, train_datasets=train, output_dir=str(root / f"heldout-{held_out}"))
        fit(run, datasets)
        runs = {"head": run.output_dir}
        if protocol.linear_baseline:
            runs["linear"] = str(root / f"heldout-{held_out}-linear")
            fit_linear_baseline(replace(run, output_dir=runs["linear"]), datasets)
        tests = [(vocabularies[n], None, protocol.eval_split, "in-domain") for n in train]
        tests.append((vocabularies[held_out], None, protocol.eval_split, "zero-shot"))
        tests += [(vocabularies[v.tracks_of or v.name], v, "all", "zero-shot") for v in zero_shot_only]
        for model, run_dir in runs.items():
            head, saved = load_head(run_dir)
            for data_vocabulary, words, split, kind in tests:
                data = datasets.get(data_vocabulary.name, data_vocabulary, saved["pooling"])
                prior = data.label_frequencies("train") if kind == "in-domain" else None
                result = score_split(head, saved, data, split, prior, vocabulary=words)
                name = f"train {'+'.join(train)}, test {result['vocabulary']}"
                records.append(to_record(name, train, result, kind, model=model, label_space=fit_args.label_space))
                details.append(result)
    summary = {
        "settings": [r.to_dict() for r in records],
        "notes": PROTOCOL_NOTES,
        "fit_arguments": dict(vars(fit_args)),
    }
    atomic_write_json(root / "protocol.json", summary)
    atomic_write_json(root / "protocol_details.json", details)
    atomic_write_text(root / "protocol.md", results_markdown(read_settings(summary)) + "\n" + PROTOCOL_NOTES + "\n")
    return summary
