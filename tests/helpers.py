"""Small helpers shared by several test files (fixtures live in conftest.py)."""

import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

import pipeline_meralign
from meralign.vocabularies import EMOTIFY

REPO_ROOT = Path(__file__).resolve().parents[1]
# The model's remote code: every root module named *_meralign.py is shipped in each exported model folder.
REMOTE_CODE = tuple(sorted(p.name for p in REPO_ROOT.glob("*_meralign.py")))
# Debian's chromium, headless, for the browser tests (Playwright drives it; no browser download)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_pipeline(model, processors):
    """The pipeline class itself, not pipeline(TASK, ...): loading an exported model with trust_remote_code
    elsewhere in the session re-registers the task to that folder's copy of the module, which tests patch not."""
    feature_extractor, tokenizer = processors
    return pipeline_meralign.ZeroShotMusicEmotionPipeline(
        model=model, tokenizer=tokenizer, feature_extractor=feature_extractor
    )


def accelerate_launch(n_processes: int, *command: str) -> list[str]:
    """`accelerate launch` of `command` (a script and its arguments) as `n_processes` CPU processes.

    `--cpu --num_processes N` starts ONE process unless mpirun is set up (accelerate's simple launcher);
    `--multi_gpu` starts them through torch.distributed.run, and meralign joins them over gloo on CPU."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n_processes)]
    settings = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [sys.executable, *launcher, *settings, "--main_process_port", str(port), *command]


@contextmanager
def torch_threads(n: int):
    """Bitwise-equal results need equal thread counts (matmul reductions are blocked per thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------- Emotify fixture
EMOTIFY_HEADER = (
    "track id, genre, amazement, solemnity, tenderness, nostalgia, calmness, power, "
    "joyful_activation, tension, sadness, mood, liked, disliked, age, gender, mother tongue"
)
GENRE_OF = {1: "classical", 2: "classical", 150: "rock", 250: "electronic", 399: "pop"}
# (track, labels voted by one listener); rows are interleaved across tracks on purpose.
EMOTIFY_ANSWERS = [
    (1, ["tenderness", "calmness", "nostalgia"]),
    (150, ["power", "tension"]),
    (399, ["joyful_activation", "power", "amazement"]),
    (1, ["calmness", "sadness"]),
    (2, ["solemnity", "sadness"]),
    (250, ["amazement"]),
    (399, ["joyful_activation", "tenderness"]),
    (150, ["power", "joyful_activation"]),
    (1, ["calmness", "tenderness"]),
    (399, ["joyful_activation", "power"]),
]


def emotify_line(track: int, genre: str, voted: list[str]) -> str:
    votes = ["1" if label in voted else "0" for label in EMOTIFY.labels]
    return ", ".join([str(track), genre, *votes, "3", "1", "0", "34", "1", "Dutch"])


def write_emotify(path: Path, answers=EMOTIFY_ANSWERS, genre_of=GENRE_OF) -> Path:
    lines = [EMOTIFY_HEADER] + [emotify_line(t, genre_of[t], voted) for t, voted in answers]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
