"""`python train.py evaluate` (score a trained head), `python train.py protocol` (leave-one-dataset-out) and
`python train.py transfer` (transfer to unseen words on training data only: the criterion for training choices)."""

from __future__ import annotations

from dataclasses import dataclass, field

from meralign.arguments import parse_args
from meralign.evaluation.protocol import ProtocolArguments, run_protocol
from meralign.evaluation.records import read_settings
from meralign.evaluation.report import results_markdown
from meralign.evaluation.scoring import score_split, to_record
from meralign.evaluation.transfer import transfer_markdown, transfer_validation
from meralign.features.datasets import CacheDatasets
from meralign.files import atomic_write_json
from meralign.head import load_head
from meralign.training.arguments import FitArguments


@dataclass
class EvaluateArguments:
    """Score a trained head on cached features (`python train.py evaluate --help`)."""

    cache_dir: str = field(metadata={"help": "Feature cache written by `train.py extract`."})
    head_dir: str = field(metadata={"help": "Output folder of `train.py fit`."})
    datasets: list[str] = field(
        default_factory=list, metadata={"help": "Datasets to score (default: all in the cache)."}
    )
    split: str = field(default="test", metadata={"help": "'train', 'validation', 'test' or 'all'."})
    vocabularies: list[str] = field(default_factory=list, metadata={"help": "Overrides as dataset=source."})
    output: str | None = field(default=None, metadata={"help": "Write the full results here as JSON."})


def evaluate_main(argv: list[str] | None = None) -> int:
    (args,) = parse_args(EvaluateArguments, argv)
    datasets = CacheDatasets(args.cache_dir)
    head, saved = load_head(args.head_dir)
    names = args.datasets or datasets.names()
    vocabularies = datasets.vocabularies(names, args.vocabularies)
    trained_on = saved.get("train_datasets", [])
    records, details = [], []
    for name in names:
        in_domain = name in trained_on
        data = datasets.get(name, vocabularies[name], saved["pooling"])
        prior = data.label_frequencies("train") if in_domain else None
        result = score_split(head, saved, data, args.split, prior)
        details.append(result)
        records.append(
            to_record(
                f"{'+'.join(trained_on)} -> {name}", trained_on, result, "in-domain" if in_domain else "zero-shot"
            )
        )
    print(results_markdown(records))
    if args.output:
        atomic_write_json(args.output, {"settings": [r.to_dict() for r in records], "details": details})
    return 0


def protocol_main(argv: list[str] | None = None) -> int:
    fit_args, protocol = parse_args([FitArguments, ProtocolArguments], argv)
    summary = run_protocol(fit_args, protocol)
    print("\n" + results_markdown(read_settings(summary)))
    return 0


def transfer_main(argv: list[str] | None = None) -> int:
    (fit_args,) = parse_args(FitArguments, argv)
    print("\n" + transfer_markdown(transfer_validation(fit_args)))
    return 0
