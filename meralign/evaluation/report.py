"""The protocol table in Markdown: each score beside its chance baselines."""

from __future__ import annotations

from meralign.evaluation.records import SettingRecord

PROTOCOL_NOTES = (
    "Macro F1 at the dataset's top-k. Splits are by track; model selection used only the training "
    "datasets' validation splits. Chance: random top-k is the exact expectation of drawing k labels "
    "uniformly per row; the frequency prior predicts the k most frequent training labels (for zero-shot "
    "vocabularies, the test labels' own frequencies: optimistic). ROC-AUC chance is 0.5; PR-AUC chance "
    "is the mean label prevalence."
)


def results_markdown(records: list[SettingRecord]) -> str:
    lines = [
        "| setting | kind | k | macro-F1 segment | song (mean) | song (vote) | chance: random top-k | "
        "chance: frequency prior | ROC-AUC | PR-AUC (chance) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        m, f1_chance = r.metrics, r.baselines("segment", "macro_f1")
        lines.append(
            f"| {r.name} | {r.kind} | {r.top_k} | {m['segment']['macro_f1']:.3f} | {m['song_mean']['macro_f1']:.3f} | "
            f"{m['song_vote']['macro_f1']:.3f} | {f1_chance['random_topk']:.3f} | {f1_chance['frequency_prior']:.3f} "
            "| "
            f"{m['segment']['roc_auc']:.3f} | {m['segment']['pr_auc']:.3f} "
            f"({r.baselines('segment', 'pr_auc')['chance']:.3f}) |"
        )
    return "\n".join(lines)
