"""Evaluation: scoring a head on a split, the protocol, its records and its Markdown table."""
