"""Label vectors: emotion words through the sentence-transformer, under a template (and descriptions) or in a
label space (its template ensemble and transform, scoring_meralign.py), exactly as a saved model embeds them."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from meralign.towers import default_text_model_path
from scoring_meralign import check_label_space, check_template, label_space_matrix, label_text


def load_text_model(name_or_path: str | Path | None = None, device: str | None = None):
    """The SentenceTransformer for ``name_or_path`` (default: the packaged one), loaded once per process."""
    return _cached_text_model(str(name_or_path) if name_or_path is not None else default_text_model_path(), device)


@functools.lru_cache(maxsize=4)
def _cached_text_model(name_or_path: str, device: str | None):
    # Keyed on the resolved name, so load_text_model(), (None) and (default path) share one model.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device=device)


def resolve_model(model):
    """A SentenceTransformer (or anything with its `encode`) from None, a name or path, or the object itself."""
    if model is None or isinstance(model, (str, Path)):
        return load_text_model(model)
    if not hasattr(model, "encode"):
        raise TypeError(f"model must be None, a model name/path or a SentenceTransformer, got {type(model).__name__}")
    return model


def _apply_template(template: str | None, label: str) -> str:
    return label if template is None else template.format(label)


def _label_texts(
    labels: list[str],
    template: str | None,
    descriptions: Mapping[str, str | Sequence[str]] | None,
    label_space: dict | None,
) -> list[list[str]]:
    """Texts embedded for each label: the label under each of the label space's templates; without a label
    space, the (templated) label, then its descriptions, if any."""
    if label_space is not None:
        if template is not None or descriptions:
            raise ValueError("label_space brings its own templates: give template and descriptions only without it")
        templates = [check_template(t, "label_space['templates'] entry") for t in label_space["templates"]]
        return [[t.format(label_text(label, label_space)) for t in templates] for label in labels]
    if template is not None:
        check_template(template, "template")
    descriptions = dict(descriptions or {})
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ValueError(f"descriptions has entries for labels that are not in labels: {unknown}")
    texts = []
    for label in labels:
        extra = descriptions.get(label, ())
        extra = [extra] if isinstance(extra, str) else list(extra)
        if not all(isinstance(text, str) and text.strip() for text in extra):
            raise ValueError(f"descriptions[{label!r}] must be a non-empty string or a list of them, got {extra!r}")
        texts.append([_apply_template(template, label), *extra])
    return texts


def embed_labels(
    labels: Sequence[str],
    model=None,
    template: str | None = None,
    descriptions: Mapping[str, str | Sequence[str]] | None = None,
    batch_size: int = 64,
    label_space: dict | None = None,
) -> np.ndarray:
    """Unit-norm label vectors of ``labels``: float32 ``[n, d]`` (d = 384 for all-MiniLM-L6-v2), one row per
    entry (a label repeated across vocabularies gets the same row twice).

    ``template`` (e.g. ``"music that sounds {}"``) wraps each label. ``descriptions`` maps a label to extra
    texts ("label augmentation"). A label's vector is the mean of its texts' unit embeddings, re-normalised. In a
    ``label_space``, the texts are the label under each of its templates, and each text's embedding goes through
    the label-space transform before the mean: the vectors a model with that label space scores against.
    """
    labels = _label_strings(labels)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    texts = _label_texts(labels, template, descriptions, label_space)
    distinct = list(dict.fromkeys(text for group in texts for text in group))  # each text encoded once
    vectors = resolve_model(model).encode(
        distinct, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    vectors = np.asarray(vectors, dtype=np.float64)
    if label_space is not None:
        check_label_space(label_space, vectors.shape[1])
        vectors = normalise_rows(vectors @ label_space_matrix(label_space, vectors.shape[1]), "label texts")
    row_of = {text: i for i, text in enumerate(distinct)}
    out = np.stack([vectors[[row_of[text] for text in group]].mean(axis=0) for group in texts])
    return normalise_rows(out, "label embeddings")


def _label_strings(labels) -> list[str]:
    """Non-empty strings. Repeats are allowed here: a word may belong to several vocabularies."""
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(f"labels must be a list of strings, got {type(labels).__name__}")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: give at least one label")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels must hold non-empty strings, got {label!r}")
    return labels


def normalise_rows(x: np.ndarray, argument: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{argument} contains a zero vector, which has no direction")
    return (x / norms).astype(np.float32)
