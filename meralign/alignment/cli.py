"""`python train.py align`: embed vocabularies, cluster them, write the outputs and print a summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from meralign.alignment.clustering import DEFAULT_MAX_CLUSTER_SPREAD
from meralign.alignment.outputs import AlignmentResult, write_alignment
from meralign.arguments import parse_args
from meralign.vocabularies import BUILTIN


@dataclass
class AlignArguments:
    """Arguments of ``train.py align`` (parsable by ``transformers.HfArgumentParser``)."""

    output_dir: str = field(metadata={"help": "Folder for label_clusters.json/.md/.png and label_centers.npz."})
    vocabularies: list[str] = field(
        default_factory=lambda: list(BUILTIN),
        metadata={"help": "Built-in names (mtg-jamendo, cal500, emotify) or files (.json list, or one label a line)."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Sentence-transformer name or folder (default: the packaged all-MiniLM-L6-v2)."},
    )
    label_space: str = field(
        default="paper",
        metadata={
            "help": "'paper' (bare labels, or --template), 'default' (the label space models score in) or a "
            "label-space JSON file."
        },
    )
    template: str | None = field(
        default=None, metadata={"help": "Prompt template with {} for the label, e.g. 'music that sounds {}'."}
    )
    descriptions: str | None = field(
        default=None,
        metadata={"help": "JSON file {label: [texts]}: extra texts averaged into each label's embedding."},
    )
    bandwidth: float | None = field(default=None, metadata={"help": "Mean Shift bandwidth (default: estimated)."})
    quantile: float | None = field(
        default=None,
        metadata={
            "help": "estimate_bandwidth quantile (default: the smallest that keeps --min_neighbors neighbours)."
        },
    )
    n_samples: int | None = field(
        default=None, metadata={"help": "Labels sampled by estimate_bandwidth (default: all)."}
    )
    random_state: int = field(default=0, metadata={"help": "Seed of estimate_bandwidth's subsampling."})
    fallback: Literal["min_neighbors", "raise", "none"] = field(
        default="min_neighbors", metadata={"help": "What to do with a degenerate clustering."}
    )
    min_neighbors: int = field(
        default=1, metadata={"help": "Neighbours the default/fallback bandwidth keeps per label."}
    )
    max_cluster_spread: float = field(
        default=DEFAULT_MAX_CLUSTER_SPREAD,
        metadata={
            "help": "A cluster of 3+ labels whose mean pairwise distance reaches this fraction of the "
            "overall mean is flagged as swept together (degenerate)."
        },
    )
    nearest_k: int = field(default=3, metadata={"help": "Labels per row of the nearest-label tables."})
    batch_size: int = field(default=64, metadata={"help": "Text encoding batch size."})


def _read_descriptions(path: str | None) -> dict | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"descriptions must be a JSON file {{label: [texts]}}, {path!r} does not exist")
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"descriptions file {path!r} must hold a JSON object {{label: [texts]}}")
    return data


def run_align(args: AlignArguments) -> AlignmentResult:
    """Run the alignment for parsed arguments and print a short summary."""
    from meralign.alignment.label_space import resolve_label_space

    result = write_alignment(
        args.output_dir,
        args.vocabularies,
        model=args.model,
        label_space=resolve_label_space(args.label_space, args.model),
        template=args.template,
        descriptions=_read_descriptions(args.descriptions),
        bandwidth=args.bandwidth,
        quantile=args.quantile,
        n_samples=args.n_samples,
        random_state=args.random_state,
        fallback=args.fallback,
        min_neighbors=args.min_neighbors,
        max_cluster_spread=args.max_cluster_spread,
        nearest_k=args.nearest_k,
        batch_size=args.batch_size,
    )
    clusters = result.clusters
    print(
        f"{len(clusters.labels)} labels -> {clusters.n_clusters} clusters (bandwidth {clusters.bandwidth:.4g})"
        + (" DEGENERATE: " + "; ".join(clusters.settings["final_reasons"]) if clusters.final_degenerate else "")
    )
    for path in result.paths.values():
        print(f"wrote {path}")
    return result


def align_main(argv: Sequence[str] | None = None) -> int:
    """``train.py align``: parse flags (or one .yaml/.json config file) and write the alignment outputs."""
    (args,) = parse_args(AlignArguments, None if argv is None else list(argv))
    run_align(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(align_main())
