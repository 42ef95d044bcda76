"""The ``evaluate`` metric folder; ``topk_metrics`` is importable without ``evaluate``."""
