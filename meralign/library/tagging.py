"""Tagging a whole library with any labels, from the stored segment vectors: no audio is decoded.

The scores are the pipeline's: the same label vectors (`pipe.label_embeddings`, as a pipeline call asks for
them), the same cosines, and scoring_meralign's `segment_scores` and `aggregate_segments`, run once over every
segment of the library with one group per recording instead of once per recording. `aggregate_segments`
computes each group exactly as `score_recording` computes a lone recording, so a track's tags equal what
`pipe(file, candidate_labels=labels)` returns for it, and 100,000 tracks take seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from meralign.library.database import LibraryDatabase, vectors_of
from scoring_meralign import AGGREGATIONS, aggregate_segments, segment_scores, top_k_indices, validate_labels

BATCH_ROWS = 32_768  # segment vectors read at a time: 100 MB as float64 at 384 dimensions


def check_top(value, argument: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument} must be an int >= 1, got {value!r}")
    return int(value)


def label_vectors(pipe, labels: list[str]) -> torch.Tensor:
    """Label vectors [labels, dim] (float32, CPU) exactly as a pipeline call scores with them by default (the
    model's label space, or its one template)."""
    return pipe.label_embeddings(labels).detach().float().cpu()


def tag_library(
    db: LibraryDatabase,
    pipe,
    labels,
    *,
    multi_label: bool = False,
    top_k: int | None = None,
    aggregation: str | None = None,
) -> list[dict]:
    """Every track's ranked `[{"label", "score"}]`, as `{"path", "duration", "labels"}` rows sorted by path."""
    labels = validate_labels(labels, "--labels", allow_string=False)
    top_k = check_top(top_k, "--top-k")
    aggregation = aggregation or getattr(pipe.model.config, "default_aggregation", "mean")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"--aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    tracks = db.tracks.search().select(["path", "content_hash", "duration"]).limit(None).to_arrow()
    if not tracks.num_rows:
        return []
    hashes, cosine = segment_cosines(db, label_vectors(pipe, labels), tracks["content_hash"])
    encoded = pc.dictionary_encode(hashes)
    groups = encoded.indices.to_numpy(zero_copy_only=False)
    per_segment = segment_scores(cosine, multi_label=bool(multi_label), **calibration(pipe))
    scores, ranking = aggregate_segments(per_segment, aggregation, vote_k=top_k or 1, groups=groups)
    order = top_k_indices(ranking, top_k or len(labels))
    row_of = {h: i for i, h in enumerate(encoded.dictionary.to_pylist())}
    out = []
    for track in sorted(tracks.to_pylist(), key=lambda t: t["path"]):
        i = row_of[track["content_hash"]]
        ranked = [{"label": labels[j], "score": float(scores[i, j])} for j in order[i]]
        out.append({"path": track["path"], "duration": track["duration"], "labels": ranked})
    return out


def segment_cosines(db: LibraryDatabase, text: torch.Tensor, committed) -> tuple[pa.Array, np.ndarray]:
    """(content hash [S], cosine [S, labels] float64) of every segment of a committed track, read in batches.

    Segments of no track (left by a kill mid-write, see database.py) are skipped."""
    committed, text = pc.unique(committed), text.double().numpy().T  # float64 cosines, as the pipeline's
    hash_chunks, cosine_chunks = [], []
    reader = db.segments.search().select(["content_hash", "vector"]).limit(None).to_batches(BATCH_ROWS)
    for batch in reader:
        keep = pc.is_in(batch["content_hash"], value_set=committed)
        batch = batch.filter(keep)
        if not batch.num_rows:
            continue
        cosine_chunks.append(vectors_of(batch["vector"]).astype(np.float64) @ text)
        hash_chunks.append(batch["content_hash"])
    if not hash_chunks:
        return pa.array([], pa.string()), np.zeros((0, text.shape[0]))
    return pa.concat_arrays(hash_chunks), np.concatenate(cosine_chunks)


def calibration(pipe) -> dict:
    """The pipeline's score calibration as the keyword arguments of `segment_scores`."""
    calibration = pipe.calibration()
    return {
        "logit_scale": float(calibration["logit_scale"]),
        "multilabel_scale": float(calibration["multilabel_scale"]),
        "multilabel_bias": float(calibration["multilabel_bias"]),
    }
