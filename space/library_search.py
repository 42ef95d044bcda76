"""The Space's "Search a library" tab, without Gradio: the example clips as a small music library.

Each clip's segment vectors go into a LanceDB table in a temp folder (the same idea as `meralign index` /
`meralign search`, which the Space cannot import), and any words rank the clips by their best moment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# Shorter than the model's 10 s segments, so each 6 s example clip has moments to tell apart.
LIBRARY_SEGMENT_SECONDS = 3.0
RESULT_COLUMNS = ["rank", "clip", "best moment (s)", "cosine"]


def query_vector(pipe, words: str) -> np.ndarray:
    """`words` embedded like one label of a pipeline call (the pipeline's own label-vector rule)."""
    return pipe.label_embeddings([words])[0].float().cpu().numpy()


def build_table(pipe, clips: list[Path]):
    """A LanceDB table of the clips' segments: clip, start, end, vector (unit length)."""
    import lancedb
    import pyarrow as pa

    rows = []
    for clip in clips:
        embeds, times = pipe.recording_embeddings(str(clip), segment_seconds=LIBRARY_SEGMENT_SECONDS)
        rows += [
            {"clip": str(clip), "start": start, "end": end, "vector": vector.tolist()}
            for (start, end), vector in zip(times, embeds.float().numpy())
        ]
    folder = tempfile.mkdtemp(prefix="meralign-space-library-")
    return lancedb.connect(folder).create_table("segments", data=pa.Table.from_pylist(rows))


def rank_clips(table, query: np.ndarray) -> list[dict]:
    """The clips ranked by their best moment's cosine to `query`: [{"clip", "start", "end", "cosine"}]."""
    hits = table.search(query).distance_type("dot").limit(table.count_rows()).to_arrow().to_pylist()
    best: dict[str, dict] = {}
    for hit in hits:  # nearest first (LanceDB's dot distance is 1 - cosine): a clip's first hit is its best
        if hit["clip"] not in best:
            cosine = 1.0 - float(hit["_distance"])
            best[hit["clip"]] = {"clip": hit["clip"], "start": hit["start"], "end": hit["end"], "cosine": cosine}
    return list(best.values())


def results_frame(results: list[dict]) -> pd.DataFrame:
    """The ranked table the tab shows."""
    rows = [
        [i, Path(r["clip"]).name, f"{r['start']:.1f}-{r['end']:.1f}", round(r["cosine"], 4)]
        for i, r in enumerate(results, 1)
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def player_label(rank: int, result: dict) -> str:
    return f"{rank}. {Path(result['clip']).name}: best moment {result['start']:.1f}-{result['end']:.1f} s"
