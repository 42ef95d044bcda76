"""`make demo`: the whole product offline on a synthetic corpus (run.py), and its report across seeds (summary.py)."""
