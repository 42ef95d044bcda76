"""Command-line arguments: every command's dataclass of flags, parsed from flags or from one config file."""

from __future__ import annotations


def parse_args(dataclass_types, argv: list[str] | None = None):
    """Parse CLI flags into dataclasses with transformers' HfArgumentParser.

    A single `.yaml`/`.yml`/`.json` argument is read as a config file instead, so every command takes
    either flags or a config file.
    """
    from transformers import HfArgumentParser

    if not isinstance(dataclass_types, (list, tuple)):
        dataclass_types = [dataclass_types]
    parser = HfArgumentParser(dataclass_types)
    if argv and len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    if argv and len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)
