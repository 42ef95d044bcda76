"""The push of a model folder (and its Gradio Space) to the Hub, planned first so a dry run shows exactly
the calls a real push makes.

The push is a list of `PushAction`s; `--dry-run` prints that plan, a real push executes the very same plan, so
the preview cannot drift from what is sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from meralign.arguments import parse_args
from meralign.publish.card import DEFAULT_LICENSE, TASK_TAG, build_model_card, load_protocol_results
from meralign.publish.folder import is_hub_id
from meralign.publish.push_files import PushAction, PushFile
from meralign.publish.space import space_files

logger = logging.getLogger(__name__)

PROTOCOL_FILE = "protocol_results.json"


_SKIPPED_PARTS = {"__pycache__", ".git", ".cache", ".ipynb_checkpoints"}


def model_files(folder) -> list[PushFile]:
    """The files of an exported model folder that go to the Hub (hidden, cache and temporary files stay)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not folder.is_dir() or not config_file.is_file():
        raise ValueError(
            f"folder {str(folder)!r} is not a model folder (no config.json): run `python train.py export` first"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "meralign" or TASK_TAG not in (config.get("custom_pipelines") or {}):
        raise ValueError(
            f"folder {str(folder)!r} is not an exported MERAlign model (config.json lacks model_type "
            f"'meralign' or the {TASK_TAG!r} pipeline): run `python train.py export` first"
        )
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(p in _SKIPPED_PARTS or p.startswith(".") for p in rel.parts):
            continue
        if path.suffix in (".pyc", ".tmp", ".lock"):
            continue
        files.append(PushFile(rel.as_posix(), local_path=path))
    return files


def _check_repo_id(value, argument: str) -> str:
    if not isinstance(value, str) or value.count("/") != 1 or not is_hub_id(value):
        raise ValueError(f"{argument} must be a full Hub id 'owner/name', got {value!r}")
    return value


def plan_push(
    folder,
    repo_id: str,
    *,
    space_repo_id: str | None = None,
    private: bool = False,
    model_card=None,
    license: str = DEFAULT_LICENSE,
    results: dict | None = None,
    space_dir=None,
    commit_message: str = "Upload MERAlign model",
) -> list[PushAction]:
    """The Hub calls a push makes, in order. The model card is `model_card` when given, else the folder's
    README.md, else one generated now (with `results` when given)."""
    _check_repo_id(repo_id, "repo_id")
    files = model_files(folder)
    if model_card is None and not any(f.path_in_repo == "README.md" for f in files):
        model_card = build_model_card(folder, results, repo_id=repo_id, license=license)
    if model_card is not None:
        files = [f for f in files if f.path_in_repo != "README.md"]
        files.insert(0, PushFile("README.md", content=str(model_card).encode("utf-8")))
    if results is not None and not any(f.path_in_repo == PROTOCOL_FILE for f in files):
        files.append(PushFile(PROTOCOL_FILE, content=(json.dumps(results, indent=2) + "\n").encode("utf-8")))
    actions = [
        PushAction("create_repo", {"repo_id": repo_id, "repo_type": "model", "private": private, "exist_ok": True}),
        PushAction(
            "create_commit", {"repo_id": repo_id, "repo_type": "model", "commit_message": commit_message}, files
        ),
    ]
    if space_repo_id is not None:
        _check_repo_id(space_repo_id, "space_repo_id")
        actions += [
            PushAction(
                "create_repo",
                {
                    "repo_id": space_repo_id,
                    "repo_type": "space",
                    "space_sdk": "gradio",
                    "private": private,
                    "exist_ok": True,
                    "space_variables": [{"key": "MODEL_ID", "value": repo_id}],
                },
            ),
            PushAction(
                "create_commit",
                {"repo_id": space_repo_id, "repo_type": "space", "commit_message": f"Space for {repo_id}"},
                space_files(repo_id, license=license, space_dir=space_dir),
            ),
        ]
    return actions


def push_to_hub(
    folder,
    repo_id: str,
    *,
    space_repo_id: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    **plan_kwargs,
) -> list[PushAction]:
    """Publish an exported model folder (and, with `space_repo_id`, a Gradio Space running it).

    Returns the actions; with `dry_run=True` nothing is sent. The token comes from `token`, else HF_TOKEN or
    the saved login, as everywhere in huggingface_hub; it is never printed or stored in the actions.
    """
    actions = plan_push(folder, repo_id, space_repo_id=space_repo_id, private=private, **plan_kwargs)
    if dry_run:
        return actions
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    for action in actions:
        if action.call == "create_repo":
            action.result = str(api.create_repo(**action.kwargs))
        else:
            info = api.create_commit(operations=[f.operation() for f in action.files], **action.kwargs)
            action.result = info.commit_url
        logger.info("%s %s: %s", action.call, action.kwargs["repo_id"], action.result)
    return actions


# ================================================================================== CLI
@dataclass
class PushArguments:
    """Publish an exported model folder to the Hub, with its model card and optionally a Gradio Space."""

    model_dir: str = field(metadata={"help": "Exported model folder (`python train.py export`)."})
    repo_id: str = field(metadata={"help": "Model repository, 'owner/name'."})
    space_repo_id: str | None = field(
        default=None, metadata={"help": "Also create/update this Gradio Space ('owner/name') running the model."}
    )
    results: str | None = field(
        default=None,
        metadata={
            "help": "protocol.json from `train.py protocol`: (re)generates the model card with these scores and "
            "uploads the file."
        },
    )
    license: str = field(
        default=DEFAULT_LICENSE,
        metadata={
            "help": "Licence of the model and Space. MERT-v1 weights are CC-BY-NC-4.0, which a model built on them "
            "inherits."
        },
    )
    datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Hub dataset ids for the card's `datasets` metadata (only when the card is generated)."},
    )
    base_models: list[str] = field(
        default_factory=list, metadata={"help": "Base model ids for the card (default: read from the model config)."}
    )
    private: bool = field(
        default=False,
        metadata={
            "help": "Create the repositories as private (a Space then needs an HF_TOKEN secret to read a private "
            "model)."
        },
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Print the files and Hub calls a push would make, and send nothing."}
    )
    commit_message: str = field(
        default="Upload MERAlign model", metadata={"help": "Commit message for the model repository."}
    )
    space_dir: str | None = field(
        default=None,
        metadata={"help": "Folder with the Space's app.py and requirements.txt (default: the checkout's space/)."},
    )


def push_main(argv: list[str] | None = None) -> int:
    """`python train.py push ...`: the token comes from HF_TOKEN or `hf auth login`, never from the command line."""
    (args,) = parse_args(PushArguments, argv)
    results = load_protocol_results(args.results) if args.results else None
    card = None
    if results is not None or args.datasets or args.base_models:
        card = build_model_card(
            args.model_dir,
            results,
            repo_id=args.repo_id,
            license=args.license,
            dataset_names=args.datasets or None,
            base_models=args.base_models or None,
        )
    if not args.dry_run:
        from huggingface_hub import constants, get_token

        if constants.HF_HUB_OFFLINE:
            print("HF_HUB_OFFLINE is set: unset it to push, or preview with --dry-run", flush=True)
            return 2
        if get_token() is None:
            print("no Hugging Face token: run `hf auth login` or set HF_TOKEN", flush=True)
            return 2
    actions = push_to_hub(
        args.model_dir,
        args.repo_id,
        space_repo_id=args.space_repo_id,
        private=args.private,
        dry_run=args.dry_run,
        model_card=card,
        license=args.license,
        results=results,
        space_dir=args.space_dir,
        commit_message=args.commit_message,
    )
    print("dry run: nothing is sent. A push would make these calls:" if args.dry_run else "pushed:")
    for action in actions:
        print(action.describe() + (f"\n    -> {action.result}" if action.result else ""))
    return 0
