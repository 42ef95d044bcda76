"""The leave-one-dataset-out protocol: for each dataset, train on the others and test zero-shot on it.

Every head is also scored in-domain (the training datasets' own test tracks) and on the zero-shot-only
vocabularies. One `CacheDatasets` serves every run, so each dataset is read from the cache once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from meralign.evaluation.report import PROTOCOL_NOTES, results_markdown
from meralign.evaluation.scoring import score_split, to_record
from meralign.features.datasets import CacheDatasets
from meralign.files import atomic_write_json, atomic_write_text
from meralign.head import load_head
from meralign.training.arguments import FitArguments
from meralign.training.trainer import fit


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
        default_factory=list, metadata={"help": "Vocabularies never trained on; every model is scored on them."}
    )
    eval_split: str = field(
        default="test",
        metadata={
            "help": "Split scored for in-domain and held-out datasets ('test' or 'all'); zero-shot-only datasets are "
            "scored on all their tracks."
        },
    )


def run_protocol(fit_args: FitArguments, protocol: ProtocolArguments, datasets=None) -> dict:
    """Train and score every setting; writes protocol.json, protocol_details.json and protocol.md.

    `datasets`: a CacheDatasets, a loaded cache, or None (`fit_args.cache_dir`)."""
    datasets = CacheDatasets.of(datasets if datasets is not None else fit_args.cache_dir)
    zero_shot_only = list(protocol.zero_shot_datasets)
    names = protocol.datasets or sorted(set(datasets.names()) - set(zero_shot_only))
    if len(names) < 2:
        raise ValueError(f"the protocol needs at least 2 datasets to hold out in turn, got {names}")
    vocabularies = datasets.vocabularies(names + zero_shot_only, fit_args.vocabularies)
    root = Path(fit_args.output_dir)
    records, details = [], []
    for held_out in names:
        train = [n for n in names if n != held_out]
        run_dir = root / f"heldout-{held_out}"
        print(f"\n=== train on {' + '.join(train)}; zero-shot test on {held_out} ===", flush=True)
        fit(replace(fit_args, train_datasets=train, output_dir=str(run_dir)), datasets)
        head, saved = load_head(run_dir)
        template, pooling = saved["hypothesis_template"], saved["pooling"]
        tag = f"train {'+'.join(train)}"
        scored = [(name, protocol.eval_split, "in-domain") for name in train]
        scored += [(held_out, protocol.eval_split, "zero-shot")] + [(z, "all", "zero-shot") for z in zero_shot_only]
        for name, split, kind in scored:
            data = datasets.get(name, vocabularies[name], pooling)
            prior = data.label_frequencies("train") if kind == "in-domain" else None
            result = score_split(head, template, data, split, prior)
            records.append(to_record(f"{tag}, test {name}", train, result, kind))
            details.append(result)
    summary = {
        "settings": [r.to_dict() for r in records],
        "notes": PROTOCOL_NOTES,
        "fit_arguments": dict(vars(fit_args)),
    }
    atomic_write_json(root / "protocol.json", summary)
    atomic_write_json(root / "protocol_details.json", details)
    atomic_write_text(root / "protocol.md", results_markdown(records) + "\n" + PROTOCOL_NOTES + "\n")
    return summary
