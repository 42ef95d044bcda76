"""The protocol table in Markdown: each score with its 95% interval and beside its chance baselines."""

from __future__ import annotations

import math

from meralign.evaluation.records import SettingRecord

PROTOCOL_NOTES = (
    "Macro F1 at the dataset's top-k, with 95% bootstrap intervals over tracks. Splits are by track; model "
    "selection used only the training datasets' validation splits. Chance: random top-k is the exact expectation "
    "of drawing k labels uniformly per row; the frequency prior predicts the k most frequent training labels (for "
    'zero-shot vocabularies, the test labels\' own frequencies: optimistic). ROC-AUC chance is 0.5. "linear" is '
    "the ridge-regression baseline into the same label space."
)


def with_interval(value: float, bounds) -> str:
    """0.412 [0.37, 0.45]; the value alone when no interval was computed."""
    if not bounds or any(not math.isfinite(b) for b in bounds):
        return f"{value:.3f}"
    return f"{value:.3f} [{bounds[0]:.2f}, {bounds[1]:.2f}]"


def results_markdown(records: list[SettingRecord]) -> str:
    lines = [
        "| setting | model | kind | k | macro-F1 segment | song (mean) | song (vote) | chance: random top-k | "
        "chance: frequency prior | ROC-AUC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        m, f1_chance, ci = r.metrics, r.baselines("segment", "macro_f1"), r.intervals
        cells = [
            with_interval(m[level]["macro_f1"], ci.get(level, {}).get("macro_f1"))
            for level in ("segment", "song_mean", "song_vote")
        ]
        auc = with_interval(m["segment"]["roc_auc"], ci.get("segment", {}).get("roc_auc"))
        lines.append(
            f"| {r.name} | {r.extra.get('model', 'head')} | {r.kind} | {r.top_k} | {' | '.join(cells)} | "
            f"{f1_chance['random_topk']:.3f} | {f1_chance['frequency_prior']:.3f} | {auc} |"
        )
    return "\n".join(lines)
