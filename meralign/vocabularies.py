"""Built-in emotion vocabularies of the three datasets the method is trained on, and user vocabularies.

The label lists are public facts about the datasets (MTG-Jamendo autotagging mood/theme, CAL500's
18 ``Emotion-*`` tags, Emotify's GEMS-9). ``top_k`` is the number of labels each dataset is scored
with in the paper (arXiv 2410.11522). CAL500 keeps "laid-back, mellow", which the paper's code
lost to a regex bug, and spells "angry, aggressive" correctly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class Vocabulary:
    """A dataset's label set. ``top_k`` is how many labels a prediction for it keeps."""

    name: str
    labels: tuple[str, ...]
    top_k: int = 1

    def __post_init__(self):
        validate_labels(self.labels, argument=f"vocabulary {self.name!r}")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= len(self.labels):
            raise ValueError(f"top_k of vocabulary {self.name!r} must be an int in [1, {len(self.labels)}], got {self.top_k!r}")

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"label {label!r} is not in vocabulary {self.name!r}") from None


def validate_labels(labels, argument: str = "labels") -> list[str]:
    """Check a label list: non-empty, strings only, no blanks, no duplicates. Returns it as a list.

    The same rules as the pipeline's `candidate_labels`, except that a bare string is refused: here a
    string is almost always a mistake (a single label, or a file name meant for `load_vocabulary`).
    """
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(f"{argument} must be a list of strings, got {type(labels).__name__}")
    from pipeline_meralign import validate_labels as validate_label_list  # imported late: it loads transformers

    return validate_label_list(list(labels), argument)


MTG_JAMENDO = Vocabulary(
    "mtg-jamendo",
    tuple([
        "action", "adventure", "advertising", "background", "ballad", "calm", "children", "christmas",
        "commercial", "cool", "corporate", "dark", "deep", "documentary", "drama", "dramatic", "dream",
        "emotional", "energetic", "epic", "fast", "film", "fun", "funny", "game", "groovy", "happy",
        "heavy", "holiday", "hopeful", "inspiring", "love", "meditative", "melancholic", "melodic",
        "motivational", "movie", "nature", "party", "positive", "powerful", "relaxing", "retro",
        "romantic", "sad", "sexy", "slow", "soft", "soundscape", "space", "sport", "summer", "trailer",
        "travel", "upbeat", "uplifting",
    ]),
    top_k=2,
)

CAL500 = Vocabulary(
    "cal500",
    tuple([
        "angry, aggressive", "arousing, awakening", "bizarre, weird", "calming, soothing",
        "carefree, lighthearted", "cheerful, festive", "emotional, passionate", "exciting, thrilling",
        "happy", "laid-back, mellow", "light, playful", "loving, romantic", "pleasant, comfortable",
        "positive, optimistic", "powerful, strong", "sad", "tender, soft", "touching, loving",
    ]),
    top_k=4,
)

EMOTIFY = Vocabulary(
    "emotify",
    tuple([
        "amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
        "tension", "sadness",
    ]),
    top_k=3,
)

BUILTIN: dict[str, Vocabulary] = {v.name: v for v in (MTG_JAMENDO, CAL500, EMOTIFY)}


def load_vocabulary(source, name: str | None = None, top_k: int = 1) -> Vocabulary:
    """A vocabulary from a built-in name, a list of strings, or a file.

    Files: ``.json`` (a list, or ``{"labels": [...], "top_k": k}``) or plain text, one label a line.
    """
    if isinstance(source, Vocabulary):
        return source
    if isinstance(source, str) and source in BUILTIN:
        return BUILTIN[source]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"vocabulary {str(source)!r} is neither a built-in name ({', '.join(BUILTIN)}) nor a file")
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                top_k = int(data.get("top_k", top_k))
                data = data.get("labels")
            labels = data
        else:
            labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return Vocabulary(name or path.stem, tuple(validate_labels(labels, f"vocabulary file {path}")), top_k)
    return Vocabulary(name or "custom", tuple(validate_labels(source, "vocabulary")), top_k)


def resolve_vocabulary(source, name: str | None = None, cache=None) -> Vocabulary:
    """The vocabulary of a dataset: a built-in or synthetic-corpus name, a label file, or, as a last
    resort, the labels a feature cache holds for `name` (sorted, top_k 1; a warning says so)."""
    if isinstance(source, Vocabulary):
        return source
    from meralign.data.synthetic import SYNTHETIC_VOCABULARIES

    if isinstance(source, str) and source in SYNTHETIC_VOCABULARIES:
        return SYNTHETIC_VOCABULARIES[source]
    if isinstance(source, str) and (source in BUILTIN or Path(source).is_file()):
        return load_vocabulary(source, name=name)
    if cache is not None and name is not None:
        import warnings

        labels = sorted({label for entry in cache.index if entry["dataset"] == name for label in entry["labels"]})
        if labels:
            warnings.warn(f"dataset {name!r} has no known vocabulary: using the {len(labels)} labels found in the cache (top_k=1)")
            return Vocabulary(name, tuple(labels), 1)
    raise ValueError(f"no vocabulary for {source!r}: expected a built-in name ({', '.join(BUILTIN)}), a synthetic dataset name, or a label file")
