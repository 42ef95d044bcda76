"""The `meralign` command: index a music library once, then tag, search and compare it with any words.

    meralign index ~/Music --model org/meralign-mert-95m --db music.db
    meralign tag --db music.db --labels joyful melancholic "angry, aggressive" --output tags.csv
    meralign search --db music.db "melancholic but hopeful" --top 10
    meralign similar --db music.db song.flac --top 10

Bad input (a missing path, an empty label list, a library built with another model, an unwritable --db) ends
with exit status 2 and a message naming the argument; nothing already indexed is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

USAGE_ERROR = 2
INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meralign", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    index = commands.add_parser("index", help="embed every audio file under some folders (resumable)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="audio files and folders (walked recursively)")
    _db_and_model(index, "model folder or Hub id (required for a new library; default: the library's)")
    index.add_argument("--segment-seconds", type=float, help="segment length of a new library (default: model's)")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    tag = commands.add_parser("tag", help="score every track against labels (no audio is decoded)")
    _db_and_model(tag)
    tag.add_argument("--labels", nargs="+", required=True, help="one or more labels, each one argument")
    tag.add_argument("--multi-label", action="store_true", help="independent calibrated score per label")
    tag.add_argument("--top-k", type=int, help="keep each track's k best labels (vote: labels per segment)")
    tag.add_argument("--aggregation", choices=("mean", "vote"), help="segment aggregation (default: model's)")
    tag.add_argument("--output", required=True, help="tags.csv or tags.json")
    search = commands.add_parser("search", help="tracks whose best moment matches some words")
    _db_and_model(search)
    search.add_argument("words", help='what to look for, e.g. "melancholic but hopeful"')
    _top_and_json(search)
    similar = commands.add_parser("similar", help="tracks nearest a recording in emotion")
    _db_and_model(similar)
    similar.add_argument("file", metavar="FILE", help="an audio file (embedded like a library track)")
    _top_and_json(similar)
    return parser


def _db_and_model(parser, model_help: str = "override the library's model (its fingerprint must match)"):
    parser.add_argument("--db", required=True, help="the library's database folder")
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--device", help="torch device for the model, e.g. cuda (default: transformers' choice)")


def _top_and_json(parser) -> None:
    parser.add_argument("--top", type=int, default=10, help="how many tracks (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"meralign {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"meralign {args.command}: interrupted; what was indexed is kept, rerun to resume", file=sys.stderr)
        return INTERRUPTED


def _open(args, create: bool = False):
    from meralign.library.api import Library

    return Library.open(args.db, args.model, create=create, device=args.device)


# ------------------------------------------------------------------------------------------ commands
def run_index(args) -> int:
    from meralign.library.sources import check_paths

    check_paths(args.paths)  # before the model loads
    library = _open(args, create=True)
    progress = False if args.no_progress else None  # None: a bar on a terminal only
    report = library.index(args.paths, segment_seconds=args.segment_seconds, progress=progress)
    print(
        f"indexed {len(report.indexed)} files ({_clock(report.audio_seconds, hours=True)} of audio) in "
        f"{report.seconds:.1f} s; "
        f"{len(report.unchanged)} already indexed, {len(report.copies)} copies of indexed files"
    )
    if report.ignored:
        print(f"ignored {len(report.ignored)} files that are not audio (by extension)")
    if report.unreadable:
        print(f"{len(report.unreadable)} unreadable files, skipped:", file=sys.stderr)
        for path, reason in report.unreadable:
            print(f"  {path}: {reason}", file=sys.stderr)
    return 0


def run_tag(args) -> int:
    from meralign.library.outputs import check_output, write_tags
    from scoring_meralign import validate_labels

    validate_labels(args.labels, "--labels", allow_string=False)
    check_output(args.output)
    rows = _open(args).tag(args.labels, multi_label=args.multi_label, top_k=args.top_k, aggregation=args.aggregation)
    path = write_tags(rows, args.output)
    print(f"tagged {len(rows)} tracks with {len(args.labels)} labels: {path}")
    return 0


def run_search(args) -> int:
    results = _open(args).search(args.words, top=args.top)
    return _print_ranked(results, args.json, lambda r: f"{r['score']:.3f}  {_clock(r['start'])}-{_clock(r['end'])}")


def run_similar(args) -> int:
    return _print_ranked(_open(args).similar(args.file, top=args.top), args.json, lambda r: f"{r['cosine']:.4f}")


def _print_ranked(results: list[dict], as_json: bool, describe) -> int:
    """JSON, or one numbered line a track: what `describe` says of it, then its path."""
    if as_json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for rank, r in enumerate(results, 1):
        print(f"{rank:3d}. {describe(r)}  {r['path']}")
    return 0


def _clock(seconds: float, hours: bool = False) -> str:
    """m:ss.s (a moment in a track), or h:mm:ss (an amount of audio)."""
    minutes, rest = divmod(float(seconds), 60)
    if hours:
        return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{int(rest):02d}"
    return f"{int(minutes)}:{rest:04.1f}"


COMMANDS = {"index": run_index, "tag": run_tag, "search": run_search, "similar": run_similar}

if __name__ == "__main__":
    sys.exit(main())
