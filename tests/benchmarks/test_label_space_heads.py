"""The summary of benchmarks/label_space_heads.py: one row per configuration, and how well each selection
criterion ranks configurations by zero-shot F1. Fake results, no training."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import label_space_heads as heads  # noqa: E402


def run(val: float, transfer: float, zero_shot: float, below: int) -> dict:
    scores = dict.fromkeys(heads.COLUMNS, 0.5)
    scores.update(val=val, transfer_over_chance=transfer, zero_shot_mean=zero_shot, below_2x_chance=below)
    return scores


def test_summary_means_over_seeds_sums_counts_and_ranks_the_criteria():
    # transfer orders the configurations as zero-shot does; validation F1 orders them the other way round
    results = {
        name: {"overrides": {}, "seeds": {"0": run(v, t, z, b), "1": run(v + 0.02, t + 0.02, z + 0.02, b)}}
        for name, v, t, z, b in (("a", 0.7, 1.2, 0.20, 3), ("b", 0.6, 1.5, 0.30, 1), ("c", 0.5, 1.9, 0.40, 0))
    }
    table = heads.summary(results)
    row_a = next(line for line in table.splitlines() if line.startswith("| a |"))
    assert row_a.startswith("| a | 2 | 0.710 | 1.210 | 0.210 |") and "| 6 |" in row_a  # below 2x: 3 + 3
    assert "val vs zero-shot mean: Spearman -1.00 over 3 configurations" in table
    assert "transfer_over_chance vs zero-shot mean: Spearman 1.00 over 3 configurations, 1.00 over 6 runs" in table


def test_summary_leaves_out_of_the_ranking_configurations_measured_before_the_criterion():
    old = {
        "overrides": {},
        "seeds": {"0": {k: v for k, v in run(0.9, 0, 0.1, 0).items() if k != "transfer_over_chance"}},
    }
    results = {
        "old": old,
        **{n: {"overrides": {}, "seeds": {"0": run(t / 4, t, t / 5, 0)}} for n, t in (("x", 1), ("y", 2), ("z", 3))},
    }
    table = heads.summary(results)
    assert "| old | 1 | 0.900 |  |" in table  # shown, with the criterion's cell empty
    assert "over 3 configurations, 1.00 over 3 runs" in table


def test_paired_t_against_the_baseline():
    base = {"0": {"transfer_over_chance": 1.0}, "1": {"transfer_over_chance": 2.0}, "2": {"transfer_over_chance": 3.0}}
    ahead = {s: {"transfer_over_chance": v["transfer_over_chance"] + d} for (s, v), d in zip(base.items(), (1, 2, 3))}
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt(3))
    assert heads.paired_t(ahead, base) == pytest.approx(2 * 3**0.5)
    assert heads.paired_t(base, base) is None  # no spread
    assert heads.paired_t({"0": ahead["0"]}, base) is None  # one common seed
    table = heads.summary({"default": {"seeds": base}, "other": {"seeds": ahead}})
    assert table.splitlines()[0].endswith("| transfer vs default: paired t |")
    assert next(line for line in table.splitlines() if line.startswith("| other |")).endswith("| +3.46 |")
