"""The label-space check of the synthetic vocabularies: does each label's nearest label in another vocabulary
name the same latent emotion?"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from meralign.data.synthetic.corpus import DATASET_SPECS
from meralign.vocabularies import SYNTHETIC_LABELS


def label_alignment(
    encode: Callable[[list[str]], np.ndarray], vocabularies: Sequence[str] | None = None
) -> list[dict]:
    """For every ordered pair of vocabularies, each label's nearest label (cosine) in the other.

    ``encode`` maps a list of strings to one embedding row each, e.g. a SentenceTransformer's
    ``encode``. One row per (source label, target vocabulary) where the target has the source's
    emotion: ``match`` says whether the nearest label is that emotion's. This is what
    cross-vocabulary transfer in the sentence-embedding space relies on.
    """
    names = list(vocabularies) if vocabularies is not None else list(DATASET_SPECS)
    for name in names:
        if name not in DATASET_SPECS:
            raise ValueError(
                f"vocabularies contains unknown dataset {name!r}; expected names from {tuple(DATASET_SPECS)}"
            )
    words = sorted({SYNTHETIC_LABELS[n][e] for n in names for e in DATASET_SPECS[n].emotions})
    vectors = np.asarray(encode(words), dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = dict(zip(words, vectors))
    rows = []
    for source in names:
        for target in names:
            if source == target:
                continue
            target_emotions = DATASET_SPECS[target].emotions
            matrix = np.stack([embedding[SYNTHETIC_LABELS[target][e]] for e in target_emotions])
            for emotion in DATASET_SPECS[source].emotions:
                if emotion not in target_emotions:
                    continue
                sims = matrix @ embedding[SYNTHETIC_LABELS[source][emotion]]
                best = int(np.argmax(sims))
                rows.append(
                    {
                        "source": source,
                        "target": target,
                        "emotion": emotion,
                        "label": SYNTHETIC_LABELS[source][emotion],
                        "nearest": SYNTHETIC_LABELS[target][target_emotions[best]],
                        "nearest_emotion": target_emotions[best],
                        "cosine": float(sims[best]),
                        "same_emotion_cosine": float(sims[target_emotions.index(emotion)]),
                        "match": target_emotions[best] == emotion,
                    }
                )
    return rows
