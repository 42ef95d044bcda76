"""MERT feature extraction into an on-disk cache, and reading it back: layout, plan, stream, shards, extract, cache, "
"cli."""
