"""Which files a library indexes: folders walked for audio files, the files' content hashes and durations.

A folder holds more than music (cover art, playlists, notes), so a walk keeps only audio file extensions and
counts the rest as ignored; a file named on the command line is always tried, and reported if unreadable.
Durations come from the file header (soundfile.info), so the progress bar knows the hours to embed before any
audio is decoded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What a walk picks up: the formats the pipeline decodes, and common ones it cannot (m4a, aac, wma), so those
# are reported as unreadable rather than silently passed over.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .caf .w64 .rf64 .au .m4a .aac .wma".split()
)
# libsndfile reports a length it does not know (e.g. a streamed FLAC) as the largest frame count.
UNKNOWN_FRAMES = 2**62
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One file to index: its absolute path, size and modification time (the quick unchanged-check)."""

    path: str
    size: int
    mtime_ns: int


def check_paths(paths, argument: str = "PATH") -> list[Path]:
    """The paths to index, each an existing file or folder; a ValueError names the first one that is not."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not paths:
        raise ValueError(f"{argument}: give at least one audio file or folder to index, got {paths!r}")
    checked = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{argument} must be file or folder paths, got {path!r} ({type(path).__name__})")
        path = Path(path).expanduser()
        if not path.exists():
            raise ValueError(f"{argument} {str(path)!r} does not exist")
        checked.append(path)
    return checked


def find_audio(paths: Iterable[Path]) -> tuple[list[SourceFile], list[str]]:
    """Audio files under `paths` (folders walked recursively, sorted), and the non-audio files passed over."""
    found: dict[str, SourceFile] = {}
    ignored = []
    for root in paths:
        if root.is_dir():
            for folder, dirs, names in os.walk(root):
                # hidden folders (.git, caches) and LanceDB tables (a --db kept inside the music) hold no music
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".lance"))
                for name in sorted(names):
                    path = os.path.join(folder, name)
                    if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                        _add(found, path)
                    elif not name.startswith("."):
                        ignored.append(os.path.abspath(path))
        else:
            _add(found, str(root))
    return list(found.values()), ignored


def _add(found: dict, path: str) -> None:
    path = os.path.abspath(path)
    if path not in found and os.path.isfile(path):
        stat = os.stat(path)
        found[path] = SourceFile(path, stat.st_size, stat.st_mtime_ns)


def content_hash(path: str) -> str:
    """A digest of the file's bytes: the identity of a recording, whatever its name or folder."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def header_seconds(path: str) -> float | None:
    """The duration the file header states, without decoding; None when unreadable or unstated."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:  # libsndfile reports unreadable files as several exception types
        return None
    if info.samplerate <= 0 or info.frames <= 0 or info.frames >= UNKNOWN_FRAMES:
        return None
    return info.frames / info.samplerate
