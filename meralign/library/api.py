"""The music library's Python API: the same four operations as the `meralign` command.

```python
from meralign.library.api import Library

library = Library.open("music.db", model="org/meralign-mert-95m", create=True)
library.index(["~/Music"])                      # once: every segment embedded and stored
library.tag(["joyful", "melancholic", "tense"])  # any labels, in seconds, from the stored vectors
library.search("melancholic but hopeful")       # tracks and the moment where it is strongest
library.similar("song.flac")                    # tracks that feel like this one
```

Opening a library loads its model (the one named in the database unless `model` or `pipe` says otherwise) and
refuses a model whose fingerprint differs from the database's, before anything is read or written.
"""

from __future__ import annotations

import math

from audio_meralign import receptive_field
from meralign.library.database import LibraryDatabase, LibraryInfo, check_db_location, db_path, read_info
from meralign.library.fingerprint import model_fingerprint
from meralign.library.index import IndexReport, index_files
from meralign.library.model import load_pipeline, model_reference
from meralign.library.queries import search_library, similar_tracks
from meralign.library.sources import check_paths
from meralign.library.tagging import tag_library


class Library:
    """A library database and the pipeline of its model. Build one with `Library.open`."""

    def __init__(self, path, pipe, model_id: str, fingerprint: str):
        self.path, self.pipe, self.model_id, self.fingerprint = path, pipe, model_id, fingerprint
        self._reader: LibraryDatabase | None = None  # kept open: LanceDB caches the vector index in memory

    @classmethod
    def open(cls, db, model=None, *, pipe=None, create: bool = False, device=None) -> Library:
        """The library at `db`. `model`: a folder or Hub id (default: the database's); `pipe`: an already
        built zero-shot-music-emotion pipeline instead (its model is still checked); `create`: a new
        library may be made at `db` (by `index`), which must then be writable."""
        path = db_path(db) if create else LibraryDatabase.open(db).path
        info = read_info(path)
        model_id = cls._model_id(model, pipe, info, path)
        if create:
            check_db_location(path)  # created and probed: before the model loads
        pipe = pipe if pipe is not None else load_pipeline(model_id, device)
        fingerprint = model_fingerprint(pipe.model)
        if info is not None:
            LibraryDatabase.open(path).check_model(fingerprint, model_id)
        return cls(path, pipe, model_id, fingerprint)

    @staticmethod
    def _model_id(model, pipe, info: LibraryInfo | None, path) -> str:
        if model is not None:
            return model_reference(model)
        if info is not None:
            return info.model_id
        if pipe is not None and getattr(pipe.model, "name_or_path", ""):
            return model_reference(pipe.model.name_or_path)
        raise ValueError(f"--model is required to create a new library at --db {str(path)!r}")

    # ---------------------------------------------------------------------------------------- operations
    def index(self, paths, *, segment_seconds: float | None = None, progress=None, on_file=None) -> IndexReport:
        """Embed the audio files under `paths` (skipping those already indexed); see index.index_files.

        `segment_seconds` is fixed when the library is created (default: the model's segment length)."""
        paths = check_paths(paths)
        info = read_info(self.path)
        config = self.pipe.model.config
        seconds = self._check_segment_seconds(segment_seconds, config, info)
        wanted = LibraryInfo(self.model_id, self.fingerprint, seconds, int(config.projection_size))
        with LibraryDatabase.open_for_writing(self.path, wanted) as db:
            return index_files(db, self.pipe, paths, progress=progress, on_file=on_file)

    def tag(self, labels, *, multi_label: bool = False, top_k=None, aggregation=None) -> list[dict]:
        """Every track's ranked labels, as the pipeline would score its file: [{"path", "duration", "labels"}]."""
        db = self._read()
        return tag_library(db, self.pipe, labels, multi_label=multi_label, top_k=top_k, aggregation=aggregation)

    def search(self, words, *, top: int = 10) -> list[dict]:
        """Tracks whose best moment matches `words`: [{"path", "duration", "start", "end", "cosine", "score"}]."""
        return search_library(self._read(), self.pipe, words, top=top)

    def similar(self, file, *, top: int = 10) -> list[dict]:
        """Tracks nearest the recording `file` in emotion: [{"path", "duration", "cosine"}], nearest first."""
        return similar_tracks(self._read(), self.pipe, file, top=top)

    def _read(self) -> LibraryDatabase:
        if self._reader is None:
            self._reader = LibraryDatabase.open(self.path)
        else:
            self._reader.refresh()  # what an indexer committed since
        self._reader.check_model(self.fingerprint, self.model_id)  # the database may have been rebuilt
        return self._reader

    @staticmethod
    def _check_segment_seconds(value, config, info: LibraryInfo | None) -> float:
        if value is None:
            return info.segment_seconds if info is not None else float(config.segment_seconds)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"--segment-seconds must be a positive number of seconds, got {value!r}")
        minimum = receptive_field(config.audio_config) / config.sampling_rate
        if value < minimum:
            raise ValueError(f"--segment-seconds must cover one encoder frame ({minimum:.4f} s), got {value!r}")
        return float(value)
