"""Emotion vocabularies: the built-in ones of the real datasets and of the synthetic demo corpus, user files,
and `resolve()`, the one place that turns a name into a Vocabulary for every command.

The real label lists are public facts about the datasets (MTG-Jamendo autotagging mood/theme, CAL500's 18
``Emotion-*`` tags, Emotify's GEMS-9). ``top_k`` is the number of labels each dataset is scored with in the
paper (arXiv 2410.11522). CAL500 keeps "laid-back, mellow", which the paper's code lost to a regex bug, and
spells "angry, aggressive" correctly. The synthetic vocabularies name the demo corpus's latent emotions
(docs/synthetic-corpus.md says why these words).

A leaf module: it imports only the standard library and the scoring rules (numpy), so any part of the
project can import it cheaply.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from scoring_meralign import validate_labels


@dataclass(frozen=True)
class Vocabulary:
    """A dataset's label set. ``top_k`` is how many labels a prediction for it keeps. ``tracks_of`` names the
    dataset whose tracks a relabelling vocabulary scores (None: its own dataset's)."""

    name: str
    labels: tuple[str, ...]
    top_k: int = 1
    # a vocabulary that names another dataset's tracks: its label i is label i of that dataset's vocabulary
    tracks_of: str | None = None

    def __post_init__(self):
        validate_labels(list(self.labels), argument=f"vocabulary {self.name!r}", allow_string=False)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 1 <= self.top_k <= len(self.labels):
            raise ValueError(
                f"top_k of vocabulary {self.name!r} must be an int in [1, {len(self.labels)}], got {self.top_k!r}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"label {label!r} is not in vocabulary {self.name!r}") from None


# ---------------------------------------------------------------------------------- the real datasets
MTG_JAMENDO = Vocabulary(
    "mtg-jamendo",
    tuple(
        [
            "action",
            "adventure",
            "advertising",
            "background",
            "ballad",
            "calm",
            "children",
            "christmas",
            "commercial",
            "cool",
            "corporate",
            "dark",
            "deep",
            "documentary",
            "drama",
            "dramatic",
            "dream",
            "emotional",
            "energetic",
            "epic",
            "fast",
            "film",
            "fun",
            "funny",
            "game",
            "groovy",
            "happy",
            "heavy",
            "holiday",
            "hopeful",
            "inspiring",
            "love",
            "meditative",
            "melancholic",
            "melodic",
            "motivational",
            "movie",
            "nature",
            "party",
            "positive",
            "powerful",
            "relaxing",
            "retro",
            "romantic",
            "sad",
            "sexy",
            "slow",
            "soft",
            "soundscape",
            "space",
            "sport",
            "summer",
            "trailer",
            "travel",
            "upbeat",
            "uplifting",
        ]
    ),
    top_k=2,
)

CAL500 = Vocabulary(
    "cal500",
    tuple(
        [
            "angry, aggressive",
            "arousing, awakening",
            "bizarre, weird",
            "calming, soothing",
            "carefree, lighthearted",
            "cheerful, festive",
            "emotional, passionate",
            "exciting, thrilling",
            "happy",
            "laid-back, mellow",
            "light, playful",
            "loving, romantic",
            "pleasant, comfortable",
            "positive, optimistic",
            "powerful, strong",
            "sad",
            "tender, soft",
            "touching, loving",
        ]
    ),
    top_k=4,
)

EMOTIFY = Vocabulary(
    "emotify",
    tuple(
        [
            "amazement",
            "solemnity",
            "tenderness",
            "nostalgia",
            "calmness",
            "power",
            "joyful_activation",
            "tension",
            "sadness",
        ]
    ),
    top_k=3,
)

BUILTIN: dict[str, Vocabulary] = {v.name: v for v in (MTG_JAMENDO, CAL500, EMOTIFY)}

# Other spellings users type for the built-in vocabularies (matched case-insensitively, "_" = "-").
ALIASES = {
    "mtg": "mtg-jamendo",
    "jamendo": "mtg-jamendo",
    "mtg-jamendo-moodtheme": "mtg-jamendo",
    "cal500-emotion": "cal500",
    "emotify-gems9": "emotify",
    "gems9": "emotify",
    "gems-9": "emotify",
}


# ------------------------------------------------------------------------------ the synthetic corpus
EMOTIONS: tuple[str, ...] = ("joyful", "sad", "tender", "angry", "calm", "tense", "solemn", "powerful")

# The demo corpus's training-style vocabularies use each real dataset's own words for the latent emotions, mapped
# by meaning (docs/synthetic-corpus.md gives the reason for each); an emotion the dataset has no word for is left
# out of it. CAL500 has no word for tension or solemnity, GEMS-9 (Emotify) none for anger; MTG-Jamendo's closest
# tags for anger, tension and solemnity are "heavy", "dark" and "deep".
# fmt: off
SYNTHETIC_LABELS: dict[str, dict[str, str]] = {
    "synth-jamendo": {
        "joyful": "happy", "sad": "sad", "tender": "romantic", "angry": "heavy", "calm": "calm", "tense": "dark",
        "solemn": "deep", "powerful": "powerful",
    },
    "synth-cal500": {
        "joyful": "happy", "sad": "sad", "tender": "tender, soft", "angry": "angry, aggressive",
        "calm": "calming, soothing", "powerful": "powerful, strong",
    },
    "synth-emotify": {
        "joyful": "joyful_activation", "sad": "sadness", "tender": "tenderness", "calm": "calmness",
        "tense": "tension", "solemn": "solemnity", "powerful": "power",
    },
    # tracks never trained on; their labels are the latent emotions' names, scored under the everyday words below
    "synth-zeroshot": {emotion: emotion for emotion in EMOTIONS},
}
# Zero-shot-only vocabularies: ordinary words a user might type for the latent emotions (everyday thesaurus
# synonyms), chosen without looking at any model score and disjoint from every training word and from the label
# space's pole and common words. They name the synth-zeroshot tracks: word i is that vocabulary's label i.
EVERYDAY_LABELS: dict[str, dict[str, str]] = {
    "everyday-1": {
        "joyful": "jolly", "sad": "glum", "tender": "affectionate", "angry": "furious", "calm": "tranquil",
        "tense": "anxious", "solemn": "serious", "powerful": "mighty",
    },
    "everyday-2": {
        "joyful": "merry", "sad": "tearful", "tender": "gentle", "angry": "irate", "calm": "restful",
        "tense": "nervous", "solemn": "grave", "powerful": "triumphant",
    },
    "everyday-3": {
        "joyful": "gleeful", "sad": "heartbroken", "tender": "caring", "angry": "enraged", "calm": "placid",
        "tense": "worried", "solemn": "somber", "powerful": "forceful",
    },
}
# top_k of each synthetic vocabulary, and whether the demo trains on it
SYNTHETIC_SETTINGS: dict[str, tuple[int, bool]] = {
    "synth-jamendo": (1, True), "synth-cal500": (2, True), "synth-emotify": (2, True), "synth-zeroshot": (1, False),
}
# fmt: on


def _synthetic(name: str, table: dict[str, str], top_k: int, tracks_of: str | None = None) -> Vocabulary:
    return Vocabulary(name, tuple(table[e] for e in EMOTIONS if e in table), top_k, tracks_of)


SYNTHETIC: dict[str, Vocabulary] = {
    name: _synthetic(name, SYNTHETIC_LABELS[name], top_k) for name, (top_k, _) in SYNTHETIC_SETTINGS.items()
}
SYNTHETIC.update({name: _synthetic(name, table, 1, "synth-zeroshot") for name, table in EVERYDAY_LABELS.items()})
SYNTHETIC_TRAINING: tuple[str, ...] = tuple(n for n, (_, trained) in SYNTHETIC_SETTINGS.items() if trained)
SYNTHETIC_ZERO_SHOT: tuple[str, ...] = tuple(EVERYDAY_LABELS)


# ------------------------------------------------------------------------------------------ resolving
def resolve(source, name: str | None = None, cache=None, top_k: int = 1) -> Vocabulary:
    """The vocabulary that `source` names, the same way for every command.

    `source` is a Vocabulary; a list of labels; a built-in or synthetic name, or an alias ("mtg", "CAL500",
    "gems9"; case and "_" / "-" do not matter); or a label file (``.json``: a list or ``{"labels": [...],
    "top_k": k}``; other: one label a line). As a last resort, with `cache` and `name`, the labels a feature
    cache holds for dataset `name` (sorted, top_k 1; a warning says so). `name` and `top_k` name and size a
    vocabulary built from a list or a file.
    """
    if isinstance(source, Vocabulary):
        return source
    if isinstance(source, (list, tuple)):
        return Vocabulary(
            name or "custom", tuple(validate_labels(list(source), "vocabulary", allow_string=False)), top_k
        )
    if not isinstance(source, (str, Path)):
        raise TypeError(f"vocabulary must be a name, a label file or a list of labels, got {type(source).__name__}")
    known = _known(str(source))
    if known is not None:
        return known
    path = Path(source)
    if path.is_file():
        return _from_file(path, name, top_k)
    if cache is not None and name is not None:
        labels = sorted({label for entry in cache.index if entry["dataset"] == name for label in entry["labels"]})
        if labels:
            warnings.warn(
                f"dataset {name!r} has no known vocabulary: using the {len(labels)} labels found in the "
                "cache (top_k=1)",
                stacklevel=2,
            )
            return Vocabulary(name, tuple(labels), 1)
    raise ValueError(
        f"vocabulary {str(source)!r} is neither a known name ({', '.join([*BUILTIN, *SYNTHETIC])}, or an alias such "
        f"as {', '.join(sorted(ALIASES)[:3])}) nor a label file"
    )


def resolve_datasets(names: list[str], overrides: list[str] = (), cache=None) -> dict[str, Vocabulary]:
    """The vocabulary of each dataset name: `overrides` entries `dataset=source` first, else the name itself."""
    given = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--vocabularies entries must look like dataset=source, got {item!r}")
        key, source = item.split("=", 1)
        given[key] = source
    return {name: resolve(given.get(name, name), name=name, cache=cache) for name in names}


def _known(text: str) -> Vocabulary | None:
    key = text.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    return BUILTIN.get(key) or SYNTHETIC.get(key)


def _from_file(path: Path, name: str | None, top_k: int) -> Vocabulary:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            top_k = int(data.get("top_k", top_k))
            data = data.get("labels")
        labels = data
    else:
        labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not isinstance(labels, list):
        raise ValueError(f'vocabulary file {path} must hold a list of labels (or {{"labels": [...]}})')
    return Vocabulary(
        name or path.stem, tuple(validate_labels(labels, f"vocabulary file {path}", allow_string=False)), top_k
    )
