"""A ``datasets.Dataset`` with an audio and a labels column (read undecoded: its decoder needs torchcodec)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meralign.data.adapters.checks import build_tracks, check_unique, checked_labels
from meralign.data.adapters.splits import DEFAULT_FRACTIONS, split_by_track
from meralign.data.tracks import SPLITS, Track
from meralign.vocabularies import Vocabulary, resolve


def _classlabel_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column, or of a List/LargeList/Sequence of ClassLabel; else None."""
    from datasets import ClassLabel

    for candidate in (feature, getattr(feature, "feature", None)):
        if isinstance(candidate, ClassLabel):
            return list(candidate.names)
    return None


def _label_decoder(feature: Any, column: str) -> Callable[[Any, str], list[str]]:
    """A function turning a labels cell into label names, from the column's feature type."""
    names = _classlabel_names(feature)

    def decode(value: Any, track_id: str) -> list[str]:
        items = value if isinstance(value, (list, tuple)) else [value]
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int) and not isinstance(item, bool) and names is not None:
                if not 0 <= item < len(names):
                    raise ValueError(
                        f"{column!r} of track {track_id!r}: class id {item} is outside the "
                        f"ClassLabel's {len(names)} names"
                    )
                out.append(names[item])
            else:
                raise TypeError(
                    f"{column!r} of track {track_id!r} must hold label strings or ClassLabel ids, "
                    f"got {item!r} ({type(item).__name__})"
                )
        return out

    return decode


def _hf_audio_value(value: Any, track_id: str, column: str) -> Any:
    # Bytes win: a Hub dataset's "path" is often just a file name inside an archive.
    if not isinstance(value, dict):
        raise TypeError(
            f"{column!r} of track {track_id!r} must be an audio {{'path', 'bytes'}} value, got {type(value).__name__}"
        )
    if value.get("bytes"):
        return value["bytes"]
    if value.get("path"):
        return value["path"]
    raise ValueError(f"{column!r} of track {track_id!r} has neither bytes nor a path")


def _hf_tracks(
    ds: Any,
    split_name: str | None,
    vocab: Vocabulary | None,
    audio_column: str,
    labels_column: str,
    track_id_column: str | None,
    split_column: str | None,
) -> tuple[list, dict[str, str], Vocabulary]:
    """Rows and any explicit splits of one ``datasets.Dataset``."""
    from datasets import Audio

    for argument, column in (
        ("audio_column", audio_column),
        ("labels_column", labels_column),
        ("track_id_column", track_id_column),
        ("split_column", split_column),
    ):
        if column is not None and column not in ds.column_names:
            raise ValueError(f"{argument} {column!r} is not a column of the dataset (columns: {ds.column_names})")
    feature = ds.features[labels_column]
    if vocab is None:
        names = _classlabel_names(feature)
        if names is None:
            raise TypeError("vocabulary is required when the labels column holds strings rather than ClassLabel ids")
        vocab = Vocabulary("hf", tuple(names))
    keep = [c for c in (audio_column, labels_column, track_id_column, split_column) if c]
    try:
        # decode=False gives {"path", "bytes"} without torchcodec/FFmpeg; soundfile decodes later.
        table = ds.select_columns(keep).cast_column(audio_column, Audio(decode=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"audio_column {audio_column!r} cannot be read as audio ({error})") from None
    decode = _label_decoder(feature, labels_column)
    rows, splits = [], {}
    for index, record in enumerate(table):
        if track_id_column:
            track_id = str(record[track_id_column])
        else:
            track_id = f"{split_name}-{index}" if split_name else str(index)
        where = f"dataset row {index}" + (f" of split {split_name!r}" if split_name else "")
        labels = checked_labels(track_id, decode(record[labels_column], track_id), vocab, where)
        audio = _hf_audio_value(record[audio_column], track_id, audio_column)
        rows.append((track_id, audio, labels, {"row": index}))
        if split_name:
            splits[track_id] = split_name
        elif split_column:
            value = record[split_column]
            if value not in SPLITS:
                raise ValueError(
                    f"{where}: {split_column!r} of track {track_id!r} must be one of {SPLITS}, got {value!r}"
                )
            splits[track_id] = value
    return rows, splits, vocab


def load_hf_dataset(
    ds: Any,
    vocabulary: Any = None,
    audio_column: str = "audio",
    labels_column: str = "labels",
    track_id_column: str | None = None,
    split_column: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    name: str | None = None,
) -> list[Track]:
    """Tracks from a ``datasets.Dataset`` (or a ``DatasetDict`` keyed by split) with audio and labels.

    Audio comes out undecoded (bytes when present, else the path): the column is cast to
    ``Audio(decode=False)`` because datasets' own decoder needs torchcodec/FFmpeg. Labels may be
    strings or ClassLabel ids (single or a list). ``vocabulary`` defaults to the ClassLabel
    names. ``track_id_column`` defaults to "track_id" when present, else the row index.
    Splits: the DatasetDict's keys, else ``split_column`` (default "split" when present), else
    seeded by track.
    """
    import datasets

    vocab = resolve(vocabulary) if vocabulary is not None else None
    if isinstance(ds, datasets.DatasetDict):
        parts = list(ds.items())
        bad = [key for key, _ in parts if key not in SPLITS]
        if bad:
            raise ValueError(f"ds: DatasetDict keys must be split names {SPLITS}, got {bad!r}")
    elif isinstance(ds, datasets.Dataset):
        parts = [(None, ds)]
    else:
        raise TypeError(f"ds must be a datasets.Dataset or DatasetDict, got {type(ds).__name__}")
    rows, splits = [], {}
    for split_name, part in parts:
        id_column = track_id_column or ("track_id" if "track_id" in part.column_names else None)
        s_column = split_column or ("split" if split_name is None and "split" in part.column_names else None)
        part_rows, part_splits, vocab = _hf_tracks(
            part, split_name, vocab, audio_column, labels_column, id_column, s_column
        )
        rows.extend(part_rows)
        splits.update(part_splits)
    check_unique((r[0] for r in rows), "ds")
    if len(splits) != len(rows):
        splits = split_by_track([r[0] for r in rows], seed, fractions)
    return build_tracks(rows, name or vocab.name, splits)
