"""An in-memory stand-in for meralign.features.FeatureCache: clustered features with known latent classes.

Training and evaluation only read `.index`, `.meta`, `.features(pooling)` and `.select(...)`, so unit tests
of the head can skip audio and extraction. Each latent class has a random centre; a segment's features are
its class centre plus Gaussian noise.
"""

import numpy as np


class FakeCache:
    def __init__(self, index, features, meta):
        self.index, self._features, self.meta = index, features, meta

    def features(self, pooling="mean"):
        return self._features[pooling]

    def select(self, datasets=None, splits=None):
        keep = [
            i
            for i, e in enumerate(self.index)
            if (datasets is None or e["dataset"] in datasets) and (splits is None or e["split"] in splits)
        ]
        return np.array(keep, dtype=int)

    def __len__(self):
        return len(self.index)


SPLIT_CYCLE = ("train", "train", "validation", "train", "test", "train", "train", "validation", "train", "test")


def make_cache(latent, n_tracks=60, segments=3, hidden=16, layers=(1, 2), seed=0, noise=0.6):
    """latent: {dataset: {label: latent class id}}. Tracks cycle through labels and (independently) splits."""
    rng = np.random.default_rng(seed)
    n_latent = max(max(m.values()) for m in latent.values()) + 1
    centres = rng.standard_normal((n_latent, len(layers), hidden))
    index, feats = [], []
    for dataset, mapping in latent.items():
        labels = list(mapping)
        for t in range(n_tracks):
            label = labels[t % len(labels)]
            split = SPLIT_CYCLE[(t // len(labels)) % len(SPLIT_CYCLE)]
            for s in range(segments):
                index.append(
                    {
                        "track_id": f"{dataset}-{t}",
                        "dataset": dataset,
                        "split": split,
                        "labels": [label],
                        "segment": s,
                        "start": float(s),
                        "end": float(s + 1),
                    }
                )
                feats.append(centres[mapping[label]] + noise * rng.standard_normal((len(layers), hidden)))
    features = np.asarray(feats, dtype=np.float16)
    return FakeCache(
        index, {"mean": features, "first": features}, {"feature_layers": list(layers), "hidden_size": hidden}
    )
