"""`python train.py extract`: read the datasets a command names and cache their MERT features."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from meralign.arguments import parse_args
from meralign.data.tracks import Track
from meralign.features.extract import extract_features
from meralign.runtime import MIXED_PRECISIONS
from meralign.towers import load_base_model
from meralign.vocabularies import Vocabulary, resolve


@dataclass
class ExtractArguments:
    """`python train.py extract`: cache MERT features of datasets listed in manifests."""

    cache_dir: str = field(metadata={"help": "Folder of the feature cache (created; a rerun resumes it)."})
    manifests: list[str] = field(
        default_factory=list,
        metadata={
            "help": "CSV/JSONL dataset manifests (path, labels[, track_id][, split]); "
            "each manifest's file stem becomes its dataset name."
        },
    )
    datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Datasets in their native layout, as kind:key=value,key=value with the adapter's arguments, e.g. "
            "'mtg-jamendo:root=DATA/mtg-jamendo/data,audio_dir=DATA/mtg-audio' "
            "'cal500:annotations_dir=DATA/cal500/annotations,audio_dir=DATA/cal500/mp3' "
            "'emotify:data_csv=DATA/emotify/data.csv,audio_dir=DATA/emotify'. Their built-in vocabularies apply."
        },
    )
    vocabularies: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Label vocabulary per manifest (a built-in or synthetic name such as mtg-jamendo, cal500, "
            "emotify, "
            "synth-jamendo, or an alias such as mtg; or a .json/.txt file). "
            "Give one for all manifests or one per manifest."
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "A saved MERAlign model folder, or 'tiny' for a randomly initialised tiny tower (offline tests "
            "and demos)."
        },
    )
    mert: str | None = field(
        default=None, metadata={"help": "A MERT-v1 checkpoint (folder or Hub id), used instead of --model."}
    )
    text: str | None = field(
        default=None,
        metadata={"help": "The sentence-transformer to pair with --mert (default: the packaged all-MiniLM-L6-v2)."},
    )
    feature_layers: list[int] | None = field(
        default=None,
        metadata={"help": "Hidden-state indices to cache, with --mert (default: the config's, 3 6 9 12)."},
    )
    segment_seconds: float | None = field(
        default=None, metadata={"help": "Override the model's segment length in seconds."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the per-track split for manifests that give no split."})
    batch_size: int = field(default=8, metadata={"help": "Segments per forward pass."})
    tracks_per_shard: int = field(
        default=16, metadata={"help": "Whole tracks per shard (the unit of resumption and distribution)."}
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding audio alongside the model."})
    mixed_precision: str = field(
        default="bf16",
        metadata={
            "help": "Autocast on GPU: 'no', 'bf16' or 'fp16' (CPU runs in float32).",
            "choices": list(MIXED_PRECISIONS),
        },
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (main process only)."})


def parse_extract_arguments(argv: Sequence[str]) -> ExtractArguments:
    """Flags, or a single .yaml/.json config file holding the same fields."""
    (args,) = parse_args(ExtractArguments, list(argv))
    return args


def build_model(args: ExtractArguments):
    """The model named by --model / --mert (+ --text), with the CLI's overrides applied."""
    return load_base_model(
        args.model, args.mert, args.text, feature_layers=args.feature_layers, segment_seconds=args.segment_seconds
    )


def load_tracks(args: ExtractArguments) -> tuple[list[Track], dict[str, Vocabulary]]:
    """Tracks of every manifest and each dataset's vocabulary."""
    from meralign.data.adapters import load_manifest

    if not args.manifests and not args.datasets:
        raise ValueError("give at least one dataset: --manifests (CSV/JSONL) or --datasets (native layouts)")
    vocab_specs = list(args.vocabularies)
    if len(vocab_specs) == 1:
        vocab_specs = vocab_specs * len(args.manifests)
    if len(vocab_specs) != len(args.manifests):
        raise ValueError(
            f"--vocabularies must give one vocabulary for all manifests or one per manifest "
            f"({len(args.manifests)}), got {len(args.vocabularies)}"
        )
    tracks, vocabularies = [], {}
    for manifest, spec in zip(args.manifests, vocab_specs):
        vocab = resolve(spec)
        loaded = load_manifest(manifest, vocab, seed=args.seed)
        for track in loaded:
            vocabularies[track.dataset] = vocab
        tracks.extend(loaded)
    for spec in args.datasets:
        loaded = load_native_dataset(spec, seed=args.seed)
        for track in loaded:
            vocabularies[track.dataset] = resolve(track.dataset)
        tracks.extend(loaded)
    return tracks, vocabularies


def load_native_dataset(spec: str, seed: int = 0) -> list[Track]:
    """Tracks of `kind:key=value,...` through the dataset adapter registered under `kind`."""
    from meralign.data.adapters import ADAPTERS, load_dataset_tracks

    kind, _, options = spec.partition(":")
    if kind not in ADAPTERS or kind in ("manifest", "hf"):
        raise ValueError(f"--datasets entry {spec!r}: kind must be one of mtg-jamendo, cal500, emotify")
    kwargs = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--datasets entry {spec!r}: options must look like key=value, got {item!r}")
        value = value.strip()
        kwargs[key.strip()] = (
            int(value) if value.isdigit() else {"true": True, "false": False}.get(value.lower(), value)
        )
    kwargs.setdefault("seed", seed)
    return load_dataset_tracks(kind, **kwargs)


def extract_main(argv: Sequence[str]) -> int:
    """`python train.py extract ...` (or `accelerate launch train.py extract ...`)."""
    args = parse_extract_arguments(argv)
    tracks, vocabularies = load_tracks(args)
    model = build_model(args)
    report = extract_features(
        model,
        tracks,
        args.cache_dir,
        batch_size=args.batch_size,
        tracks_per_shard=args.tracks_per_shard,
        num_workers=args.num_workers,
        mixed_precision=args.mixed_precision,
        vocabularies=vocabularies,
        progress=args.progress,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"feature cache: {args.cache_dir}")
        print(json.dumps(report.to_dict(), indent=1))
        if report.n_failed:
            print(f"{report.n_failed} track(s) could not be decoded and were skipped (listed above)", file=sys.stderr)
    return 0
