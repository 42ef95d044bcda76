"""The record of one protocol result: what evaluation writes and what the README, the demo and the card read.

A `SettingRecord` is one row of the protocol table: a head trained on some datasets, scored on one dataset
(in-domain or zero-shot), at segment and song level, each metric beside its chance baselines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

LEVELS = ("segment", "song_mean", "song_vote")
KINDS = ("in-domain", "zero-shot")
# Summary metrics a record keeps (the evaluate module's names on the right).
SUMMARY_KEYS = {
    "macro_f1": "macro_f1",
    "macro_precision": "macro_precision",
    "macro_recall": "macro_recall",
    "micro_f1": "micro_f1",
    "roc_auc": "roc_auc_macro",
    "pr_auc": "pr_auc_macro",
}


def chance_group(level: str) -> str:
    """Chance baselines are computed per segment and per song; both song levels share the song ones."""
    return "song" if level.startswith("song") else level


@dataclass
class SettingRecord:
    """One protocol result.

    `metrics[level][metric]` for the levels in LEVELS and the metrics in SUMMARY_KEYS; `intervals[level][metric]`
    the 95% bootstrap interval over tracks [low, high] of macro_f1 and roc_auc; `chance[group][metric]` maps
    each baseline's name ("random_topk", "frequency_prior", "chance") to its value, for the groups "segment" and
    "song"; `prior` says where the frequency prior came from ("training labels", or "test labels": optimistic,
    for vocabularies never trained on). `test` is the vocabulary scored; `extra["tracks"]` the dataset whose
    tracks it scored (they differ for a relabelling vocabulary), and which model and label space it was.
    """

    name: str
    train: list[str]
    test: str
    kind: str
    top_k: int
    n_segments: int
    n_tracks: int
    metrics: dict[str, dict[str, float]]
    chance: dict[str, dict[str, dict[str, float]]]
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    prior: str = "training labels"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        missing = [level for level in LEVELS if level not in self.metrics]
        if missing:
            raise ValueError(f"setting {self.name!r}: metrics lacks the levels {missing}")

    def baselines(self, level: str, metric: str) -> dict[str, float]:
        """The chance baselines of `metric` at `level` ({} when none apply)."""
        return dict(self.chance.get(chance_group(level), {}).get(metric, {}))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SettingRecord:
        if not isinstance(data, dict):
            raise TypeError(f"a protocol setting must be a dict, got {type(data).__name__}")
        names = set(cls.__dataclass_fields__)
        missing = sorted(n for n in names - set(data) if n not in ("prior", "extra", "intervals"))
        if missing:
            raise ValueError(f"protocol setting {data.get('name', '?')!r} lacks {missing}: rerun `train.py protocol`")
        return cls(**{k: v for k, v in data.items() if k in names})


def read_settings(results: dict) -> list[SettingRecord]:
    """The settings of a protocol JSON (`protocol.json`)."""
    if not isinstance(results, dict) or not isinstance(results.get("settings"), list):
        raise ValueError("results must be a protocol JSON object with a 'settings' list (train.py protocol writes it)")
    return [SettingRecord.from_dict(entry) for entry in results["settings"]]
