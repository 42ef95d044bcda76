"""The synthetic corpus on disk: four datasets of rendered WAVs with manifests, resumable and deterministic."""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from meralign.data.adapters.splits import split_by_track
from meralign.data.synthetic.cues import COMPATIBLE
from meralign.data.synthetic.render import SAMPLING_RATE, check_sampling_rate, check_seconds, check_seed, render_clip
from meralign.data.tracks import Track
from meralign.files import atomic_write_bytes, atomic_write_text
from meralign.vocabularies import EMOTIONS, SYNTHETIC, SYNTHETIC_LABELS, SYNTHETIC_SETTINGS, Vocabulary

# Part of every WAV's fingerprint: bump it when the rendering changes, so that a rerun of
# generate_corpus re-renders files made by an older generator instead of keeping them.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """How one synthetic dataset draws its tracks (its labels and top_k: `meralign.vocabularies.SYNTHETIC`).

    ``priors`` maps each of its emotions to the probability of being a clip's main emotion;
    ``secondary_probability`` is the chance of a second, compatible label, chosen so that the
    mean number of labels per clip is close to the vocabulary's ``top_k``.
    """

    name: str
    priors: dict[str, float]
    secondary_probability: float

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(e for e in EMOTIONS if e in self.priors)

    @property
    def vocabulary(self) -> Vocabulary:
        return SYNTHETIC[self.name]

    @property
    def zero_shot(self) -> bool:
        """Never trained on: every track is a test track."""
        return not SYNTHETIC_SETTINGS[self.name][1]


# fmt: off
DATASET_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        # Pop/library-music flavour: mostly upbeat; one label per clip, like top-1 tagging.
        DatasetSpec("synth-jamendo", {"joyful": 0.20, "sad": 0.11, "tender": 0.10, "angry": 0.11, "calm": 0.14,
                                      "tense": 0.10, "solemn": 0.07, "powerful": 0.17}, 0.15),
        # Song-rating flavour: gentle moods dominate; usually two labels per clip.
        DatasetSpec("synth-cal500", {"joyful": 0.22, "sad": 0.14, "tender": 0.20, "angry": 0.10, "calm": 0.20,
                                     "powerful": 0.14}, 0.8),
        # GEMS / classical flavour: calm, solemn, tender and tense music; usually two labels.
        DatasetSpec("synth-emotify", {"joyful": 0.12, "sad": 0.14, "tender": 0.16, "calm": 0.18, "tense": 0.14,
                                      "solemn": 0.16, "powerful": 0.10}, 0.8),
        # Never trained on: every emotion, equally likely; scored under the everyday vocabularies.
        DatasetSpec("synth-zeroshot", {e: 1 / len(EMOTIONS) for e in EMOTIONS}, 0.15),
    )
}
# fmt: on


def _track_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    # crc32 of the name, not the dataset's position: a dataset's tracks do not change when
    # ``datasets=`` selects a subset or when datasets are added.
    return np.random.default_rng([seed, zlib.crc32(dataset.encode("utf-8")), index])


def _track_emotions(spec: DatasetSpec, rng: np.random.Generator) -> tuple[str, ...]:
    """Main emotion by the dataset's prior; a compatible secondary one with its probability."""
    names = spec.emotions
    prior = np.array([spec.priors[e] for e in names])
    main = names[int(rng.choice(len(names), p=prior / prior.sum()))]
    if rng.random() >= spec.secondary_probability:
        return (main,)
    options = [e for e in COMPATIBLE[main] if e in spec.priors]
    if not options:
        return (main,)
    weights = np.array([spec.priors[e] for e in options])
    return main, options[int(rng.choice(len(options), p=weights / weights.sum()))]


def manifest_path(output_dir: str | Path, dataset: str) -> Path:
    """Where ``generate_corpus`` writes a dataset's JSONL manifest (readable by ``adapters.load_manifest``)."""
    return Path(output_dir) / f"{dataset}.jsonl"


def _fingerprint(
    dataset: str, index: int, seed: int, seconds: float, sampling_rate: int, emotions: tuple[str, ...]
) -> str:
    return (
        f"meralign-synthetic v{GENERATOR_VERSION} dataset={dataset} index={index} seed={seed} "
        f"seconds={seconds!r} sr={sampling_rate} emotions={'+'.join(emotions)}"
    )


def _is_complete(path: Path, fingerprint: str, frames: int, sampling_rate: int) -> bool:
    """True if ``path`` is a WAV this generator wrote with the same settings (so a rerun can skip it)."""
    if not path.is_file():
        return False
    try:
        with sf.SoundFile(path) as f:
            return f.comment == fingerprint and f.frames == frames and f.samplerate == sampling_rate
    except (sf.LibsndfileError, RuntimeError):
        return False


def _write_wav(path: Path, audio: np.ndarray, sampling_rate: int, fingerprint: str) -> None:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sampling_rate, 1, subtype="PCM_16", format="WAV") as f:
        f.comment = fingerprint  # stored in the WAV's INFO chunk; read back to decide skipping
        f.write(audio)
    atomic_write_bytes(path, buffer.getvalue())


def _write_manifest(path: Path, tracks: list[Track], root: Path) -> None:
    lines = [
        json.dumps(
            {
                "track_id": t.track_id,
                "path": str(Path(t.audio).relative_to(root)),
                "labels": list(t.labels),
                "split": t.split,
                "emotions": t.extra["emotions"],
            }
        )
        for t in tracks
    ]

    atomic_write_text(path, "\n".join(lines) + "\n")


def _check_datasets(datasets: Iterable[str] | None) -> list[str]:
    if datasets is None:
        return list(DATASET_SPECS)
    if isinstance(datasets, (str, bytes)) or not hasattr(datasets, "__iter__"):
        raise TypeError(f"datasets must be a list of dataset names or None, got {datasets!r}")
    names = list(dict.fromkeys(datasets))
    if not names:
        raise ValueError(f"datasets must name at least one of {tuple(DATASET_SPECS)}")
    for name in names:
        if name not in DATASET_SPECS:
            raise ValueError(f"datasets contains unknown dataset {name!r}; expected names from {tuple(DATASET_SPECS)}")
    return names


def _dataset_tracks(
    root: Path, spec: DatasetSpec, seed: int, count: int, seconds: float, sampling_rate: int
) -> list[Track]:
    """Render (or reuse) every WAV of one dataset and return its Tracks, split by track."""
    folder = root / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    frames = max(1, int(round(seconds * sampling_rate)))
    rows = []
    for index in range(count):
        rng = _track_rng(seed, spec.name, index)
        emotions = _track_emotions(spec, rng)
        clip_seed = int(rng.integers(0, 2**63 - 1))
        track_id = f"{spec.name}-{index:05d}"
        path = folder / f"{track_id}.wav"
        fingerprint = _fingerprint(spec.name, index, seed, seconds, sampling_rate, emotions)
        if not _is_complete(path, fingerprint, frames, sampling_rate):
            _write_wav(path, render_clip(emotions, clip_seed, seconds, sampling_rate), sampling_rate, fingerprint)
        rows.append((track_id, path, emotions))
    if spec.zero_shot:
        splits = {track_id: "test" for track_id, _, _ in rows}
    else:
        splits = split_by_track([r[0] for r in rows], seed, (0.7, 0.1, 0.2))
    return [
        Track(
            track_id=tid,
            audio=str(path),
            labels=tuple(SYNTHETIC_LABELS[spec.name][e] for e in emotions),
            split=splits[tid],
            dataset=spec.name,
            extra={"emotions": list(emotions)},
        )
        for tid, path, emotions in rows
    ]


def generate_corpus(
    output_dir: str | Path,
    *,
    seed: int = 0,
    tracks_per_dataset: int = 40,
    seconds: float = 6.0,
    sampling_rate: int = SAMPLING_RATE,
    datasets: Iterable[str] | None = None,
) -> dict[str, list[Track]]:
    """Render the synthetic datasets as 16-bit WAVs under ``output_dir/<dataset>/<track_id>.wav``.

    Also writes ``output_dir/<dataset>.jsonl`` (track_id, path relative to ``output_dir``, labels,
    split, latent emotions), which ``meralign.data.adapters.load_manifest`` reads back. Resumable:
    a WAV already written with the same settings is kept, anything else is re-rendered. Splits are
    seeded per track (70/10/20); the zero-shot dataset is all "test". Returns dataset -> Tracks.
    """
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"output_dir must be a path, got {output_dir!r} ({type(output_dir).__name__})")
    seed = check_seed(seed)
    if isinstance(tracks_per_dataset, bool) or not isinstance(tracks_per_dataset, int) or tracks_per_dataset < 1:
        raise ValueError(f"tracks_per_dataset must be an int >= 1, got {tracks_per_dataset!r}")
    seconds = check_seconds(seconds)
    sampling_rate = check_sampling_rate(sampling_rate)
    names = _check_datasets(datasets)
    root = Path(output_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, list[Track]] = {}
    for name in names:
        tracks = _dataset_tracks(root, DATASET_SPECS[name], seed, tracks_per_dataset, seconds, sampling_rate)
        _write_manifest(manifest_path(root, name), tracks, root)
        corpus[name] = tracks
    return corpus
