"""Building the label space a model scores in: a template ensemble, affect axes from pole words, the common
direction of emotion words; and label vectors in it, for training targets and evaluation.

The transform itself (what a saved model applies to any word at run time) is defined in scoring_meralign.py;
this module builds one from a recipe with the sentence-transformer. The recipes (label_space_*.json) and the
measurements behind them are in docs/label-space.md: the "affect" recipe was chosen on development words only
(benchmarks/label_space.py); the default keeps the bare labels' identity, which training-validation F1 favours.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meralign.alignment.text import embed_labels
from scoring_meralign import AFFECT_AXES, check_label_space

_HERE = Path(__file__).resolve().parent
# The recipes `--label_space` names (besides "paper", no label space, and a JSON file): the default keeps the bare
# label's identity and adds affect axes for valence/arousal; "affect" stretches those axes (docs/label-space.md).
RECIPES = {
    name: json.loads((_HERE / f"label_space_{name}.json").read_text(encoding="utf-8"))
    for name in ("default", "affect")
}
DEFAULT_RECIPE, AFFECT_RECIPE = RECIPES["default"], RECIPES["affect"]
LABEL_SPACES = (*RECIPES, "paper")
_BUILT: dict[str, dict] = {}


def label_vectors(labels: Sequence[str], label_space: dict | None, model=None, template: str = "{}") -> np.ndarray:
    """The vectors [labels, dim] a model with `label_space` scores `labels` against (no label space: the plain
    sentence embedding of `template` applied to each label), exactly as the model computes them. `model`: a
    sentence-transformer (default: the packaged all-MiniLM-L6-v2) or anything with its `encode`."""
    if label_space is None:
        return embed_labels(labels, model=model, template=template)
    return embed_labels(labels, model=model, label_space=label_space)


def build_label_space(recipe: dict = DEFAULT_RECIPE, model=None) -> dict:
    """A label space from a recipe: `templates`, `poles` (per axis: positive and negative pole words),
    `common_words` (whose mean direction is rescaled by `factors["common"]`) and `factors` per direction.

    Each axis is normalize(mean of the positive pole words' vectors - mean of the negative ones'), the vectors
    taken under the recipe's templates before any rescaling; the directions are made orthonormal in the order
    valence, arousal, common. The result also records where the transformed pole words fall on each axis (the
    ends of the affect scale) and the recipe's words.
    """
    plain = {"templates": _templates(recipe), "directions": [], "factors": [], "names": []}  # no rescaling
    rows, names = [], []
    for axis in AFFECT_AXES:
        positive, negative = _pole_words(recipe, axis)
        rows.append(_unit(_mean_vector(positive, plain, model) - _mean_vector(negative, plain, model)))
        names.append(axis)
    if recipe.get("common_words"):
        rows.append(_unit(_mean_vector(_words(recipe["common_words"], "common_words"), plain, model)))
        names.append("common")
    directions = _orthonormalize(np.stack(rows))
    factors = [_factor(recipe, name) for name in names]
    space = {"templates": plain["templates"], "directions": directions.tolist(), "factors": factors, "names": names}
    check_label_space(space, directions.shape[1])
    space["poles"] = {axis: _pole_projections(space, recipe, axis, model) for axis in AFFECT_AXES}
    space["recipe"] = {key: recipe[key] for key in ("poles", "factors", "common_words", "source") if key in recipe}
    return space


def resolve_label_space(name: str, model=None) -> dict | None:
    """`--label_space`: "default" (bare labels with affect axes), "affect" (stretched affect axes), "paper" (none:
    bare labels, the paper's configuration) or a JSON file holding a recipe (with `poles`) or a built label space
    (as a model config saves it)."""
    if name == "paper":
        return None
    if name in RECIPES:
        if model is not None:
            return build_label_space(RECIPES[name], model)
        if name not in _BUILT:  # a protocol trains many heads: build each named space once per process
            _BUILT[name] = build_label_space(RECIPES[name])
        return copy.deepcopy(_BUILT[name])
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"--label_space must be one of {LABEL_SPACES} or a JSON file, got {name!r}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "poles" in data and "directions" not in data:
        return build_label_space(data, model)
    dim = len(data["directions"][0]) if isinstance(data, dict) and data.get("directions") else 0
    return check_label_space(data, dim, "--label_space")


# ----------------------------------------------------------------------------------------------- helpers
def _words(words, argument: str) -> list[str]:
    if isinstance(words, str) or not isinstance(words, (list, tuple)) or not words:
        raise ValueError(f"{argument} must be a non-empty list of words, got {words!r}")
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"{argument} must hold non-empty strings (pole and common words), got {word!r}")
    return list(words)


def _templates(recipe: dict) -> list[str]:
    templates = recipe.get("templates")
    if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not templates:
        raise ValueError(f"templates must be a non-empty list of templates, got {templates!r}")
    return list(templates)  # each template is checked with the space (scoring_meralign.check_label_space)


def _factor(recipe: dict, name: str) -> float:
    factor = recipe.get("factors", {}).get(name)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
        raise ValueError(f"factors[{name!r}] must be a number >= 0, got {factor!r}")
    return float(factor)


def _pole_words(recipe: dict, axis: str) -> tuple[list[str], list[str]]:
    poles = recipe.get("poles", {}).get(axis)
    if not isinstance(poles, dict) or set(poles) != {"positive", "negative"}:
        raise ValueError(f"poles[{axis!r}] must be {{'positive': [words], 'negative': [words]}}, got {poles!r}")
    return (
        _words(poles["positive"], f"poles[{axis!r}]['positive']"),
        _words(poles["negative"], f"poles[{axis!r}]['negative']"),
    )


def _mean_vector(words: list[str], plain: dict, model) -> np.ndarray:
    """The mean of the words' vectors under the templates, before any rescaling (where directions are found)."""
    return embed_labels(words, model=model, label_space=plain).astype(np.float64).mean(axis=0)


def _pole_projections(space: dict, recipe: dict, axis: str, model) -> list[float]:
    """[negative, positive]: the mean projection of the transformed pole words on the axis (the scale's ends)."""
    direction = np.asarray(space["directions"][space["names"].index(axis)])
    positive, negative = _pole_words(recipe, axis)
    return [float((label_vectors(words, space, model) @ direction).mean()) for words in (negative, positive)]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if not norm > 0:
        raise ValueError("a label-space direction came out as a zero vector: its words embed identically")
    return vector / norm


def _orthonormalize(rows: np.ndarray) -> np.ndarray:
    """Gram-Schmidt in the given order, so the first axis (valence) keeps its meaning exactly."""
    out = []
    for row in rows:
        out.append(_unit(row - sum((row @ u) * u for u in out)))
    return np.stack(out)
