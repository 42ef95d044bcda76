"""The `zero-shot-music-emotion` pipeline: score a recording against any emotion words.

Part of the model's remote code (saved next to the model; `pipeline(model=repo, trust_remote_code=True)`).
Unlike transformers' `zero-shot-audio-classification`, it scores the whole recording segment by
segment (streamed, so memory does not grow with duration), offers independent per-label scores
(`multi_label=True`), accepts dicts, stereo, any sampling rate and raw bytes, and needs no ffmpeg.
"""

from __future__ import annotations

import hashlib
import types
from collections import OrderedDict

import numpy as np
import torch
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

try:
    from .audio_meralign import iter_segments, receptive_field
    from .onnx_meralign import BackendUnsupported, check_backend, open_backend
    from .scoring_meralign import (
        AGGREGATIONS,
        TEXT_MAX_LENGTH,
        audio_affect,
        check_template,
        combine_templates,
        has_affect_axes,
        label_templates,
        label_text,
        score_recording,
        validate_labels,
    )
except ImportError:  # imported as a top-level module (local use, tests)
    from audio_meralign import iter_segments, receptive_field
    from onnx_meralign import BackendUnsupported, check_backend, open_backend
    from scoring_meralign import (
        AGGREGATIONS,
        TEXT_MAX_LENGTH,
        audio_affect,
        check_template,
        combine_templates,
        has_affect_axes,
        label_templates,
        label_text,
        score_recording,
        validate_labels,
    )

TASK = "zero-shot-music-emotion"
DEFAULT_BATCH_SIZE = 8
# Labels per text-tower forward: attention memory grows with batch x length^2, so 1,000 long labels in one batch
# would need gigabytes; 64 at the 256-token cap stay around 200 MB.
LABEL_BATCH_SIZE = 64
# (template, label) embeddings kept between calls; the least recently used go first, so a long-running server
# fed arbitrary labels does not grow without bound (8192 x 384 floats: 12 MB).
LABEL_CACHE_SIZE = 8192
# Segment embeddings kept between calls, keyed by content: 4096 x 384 floats is 6 MB, and holds every segment
# of 11 hours of audio at 10 s segments.
AUDIO_CACHE_SIZE = 4096


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_segment_covers_a_frame(config, segment_seconds: float) -> None:
    """A segment shorter than the conv front end's receptive field yields no frame at all (a conv error)."""
    minimum = receptive_field(config.audio_config)
    if int(round(segment_seconds * config.sampling_rate)) < minimum:
        raise ValueError(
            f"segment_seconds must cover at least one encoder frame ({minimum} samples, "
            f"{minimum / config.sampling_rate:.4f} s at {config.sampling_rate} Hz), got {segment_seconds!r}"
        )


class ZeroShotMusicEmotionPipeline(ChunkPipeline):
    """Zero-shot music emotion recognition with a MERAlign model.

    ```python
    clf = pipeline("zero-shot-music-emotion", model="org/meralign-mert-95m", trust_remote_code=True)
    clf("song.ogg", candidate_labels=["joyful", "melancholic", "tense", "serene"])
    ```

    Inputs: a path (wav, flac, ogg/vorbis, opus, mp3, aiff), raw bytes, a 1-D array/tensor at the model's
    rate, a 2-D (channels) array, a dict `{"array" or "raw": ..., "sampling_rate": int}` (resampled), a
    `datasets` audio dict `{"path", "bytes"}`; a list of these (returns a list), or a generator /
    `datasets.Dataset` (returns an iterator).

    Arguments: `candidate_labels` (list, or comma-separated string), `hypothesis_template` (default: the
    template the model was trained with), `multi_label` (independent calibrated sigmoid scores instead of
    a softmax over labels), `top_k`, `segment_seconds`, `aggregation` ("mean" or "vote"),
    `return_segments` (an emotion timeline), `return_affect` (valence and arousal of the recording, and of each
    segment with `return_segments`, on the scale of the label space's pole words: -1 negative, +1 positive),
    `allow_urls` (download http(s) inputs; off by default). With `return_segments` or `return_affect` the
    result is a dict `{"labels", "scores"[, "valence", "arousal"][, "segments"]}`.

    `backend` (a constructor argument: `pipeline(..., backend="onnx")`): "torch" (default), "onnx" (the model
    folder's onnx/ files through ONNX Runtime, float32), "onnx-quantized" (its dynamic int8 audio model) or
    "onnx-int8" (its static int8 audio model, calibrated at export).
    """

    # What use_backend raises when a backend cannot run here (its file or onnxruntime is missing, this CPU has no
    # int8 kernels), unlike a broken model folder (an ONNX file of another model): a caller trying backends in
    # turn passes over these. The remote code's own classes, so `except pipe.UNAVAILABLE_BACKEND_ERRORS` matches.
    UNAVAILABLE_BACKEND_ERRORS = (FileNotFoundError, ImportError, BackendUnsupported)

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = True

    def __init__(self, *args, backend: str = "torch", **kwargs):
        check_backend(backend)  # before the model is wrapped: a typo fails fast
        super().__init__(*args, **kwargs)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE  # segments of one file are batched too
        self._label_cache: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._audio_cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._audio_cache_size = AUDIO_CACHE_SIZE
        self.use_backend(backend)

    def use_backend(self, backend: str) -> None:
        """Run the audio and label encoders on `backend` from now on (a name of onnx_meralign.BACKENDS).

        The ONNX backends open the model folder's onnx/ files (onnx_meralign.open_backend); what that raises
        (a missing file or onnxruntime, a file of another model) leaves the current backend in place. Both caches
        are emptied: another backend's embeddings differ in the last digits."""
        sessions = open_backend(backend, self.model)
        self.backend, self._onnx = backend, sessions
        self._label_cache.clear()
        self._audio_cache.clear()

    # --------------------------------------------------------------------------------- parameters
    def _sanitize_parameters(
        self,
        candidate_labels=None,
        hypothesis_template=None,
        multi_label=None,
        top_k=None,
        segment_seconds=None,
        aggregation=None,
        return_segments=None,
        return_affect=None,
        allow_urls=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"unexpected argument(s) for {TASK}: {', '.join(sorted(kwargs))}")
        preprocess, postprocess = {}, {}
        if segment_seconds is not None:
            if (
                isinstance(segment_seconds, bool)
                or not isinstance(segment_seconds, (int, float))
                or not segment_seconds > 0
            ):
                raise ValueError(f"segment_seconds must be a positive number, got {segment_seconds!r}")
            _check_segment_covers_a_frame(self.model.config, float(segment_seconds))
            preprocess["segment_seconds"] = float(segment_seconds)
        if allow_urls is not None:
            preprocess["allow_urls"] = bool(allow_urls)
        if candidate_labels is not None:
            postprocess["candidate_labels"] = validate_labels(candidate_labels)
        if hypothesis_template is not None:
            postprocess["hypothesis_template"] = check_template(hypothesis_template)
        if multi_label is not None:
            postprocess["multi_label"] = bool(multi_label)
        if top_k is not None:
            postprocess["top_k"] = _check_positive_int("top_k", top_k)
        if aggregation is not None:
            if aggregation not in AGGREGATIONS:
                raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
            postprocess["aggregation"] = aggregation
        if return_segments is not None:
            postprocess["return_segments"] = bool(return_segments)
        if return_affect and not self.has_affect:
            raise ValueError(
                "return_affect needs a model saved with affect axes (a label_space with valence and arousal "
                "and an affect_calibration in its config); this model has none"
            )
        if return_affect is not None:
            postprocess["return_affect"] = bool(return_affect)
        return preprocess, {}, postprocess

    def __call__(self, inputs, **kwargs):
        if "candidate_labels" not in kwargs and not self._postprocess_params.get("candidate_labels"):
            raise ValueError("candidate_labels is required: the emotion words to score, e.g. ['joyful', 'sad']")
        if _is_hf_dataset(inputs):
            inputs = _dataset_audio(inputs)
        elif isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            raise ValueError("inputs is an empty list: give at least one recording")
        outputs = super().__call__(inputs, **kwargs)
        if isinstance(inputs, types.GeneratorType):
            # transformers hands back an iterable whose `next()` fails until `iter()` was called on it
            return iter(outputs)
        return outputs

    # ------------------------------------------------------------------------------ the three steps
    def preprocess(self, inputs, segment_seconds=None, allow_urls=False):
        config = self.model.config
        seconds = segment_seconds or config.segment_seconds
        min_valid = receptive_field(config.audio_config)
        segments = iter_segments(
            inputs, config.sampling_rate, seconds, sampling_rate=config.sampling_rate, allow_urls=allow_urls
        )
        current = next(segments)  # raises for empty/undecodable input before anything is yielded
        while current is not None:
            following = next(segments, None)
            # Only the count of real samples travels with the segment (at least one encoder frame, so a
            # very short clip still has a frame to pool): the sample-level mask is built in _forward, which
            # keeps what waits in the DataLoader batch at one float32 array per segment.
            yield {
                "input_values": torch.from_numpy(current.samples).unsqueeze(0),
                "valid": max(current.valid, min_valid),
                "start": current.start,
                "end": current.end,
                "is_last": following is None,
            }
            current = following

    def _forward(self, model_inputs):
        start, end = model_inputs.pop("start"), model_inputs.pop("end")
        is_last = model_inputs.pop("is_last")
        # an int (batch_size=1) or a list of ints (collated batch): one count per row either way
        valid = torch.as_tensor(model_inputs["valid"]).reshape(-1)
        embeds = self.segment_embeddings(model_inputs["input_values"], valid)
        return {"audio_embeds": embeds, "start": start, "end": end, "is_last": is_last}

    # ------------------------------------------------------------------------------ audio embeddings
    @property
    def has_affect(self) -> bool:
        """Whether `return_affect=True` works: the model was saved with affect axes and their calibration."""
        config = self.model.config
        return config.affect_calibration is not None and has_affect_axes(config.label_space)

    @property
    def audio_cache_size(self) -> int:
        """How many segment embeddings the audio-embedding cache keeps (0: none)."""
        return self._audio_cache_size

    @audio_cache_size.setter
    def audio_cache_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"audio_cache_size must be an int >= 0 (0 turns the cache off), got {value!r}")
        self._audio_cache_size = value
        while len(self._audio_cache) > self._audio_cache_size:
            self._audio_cache.popitem(last=False)

    @torch.inference_mode()
    def segment_embeddings(self, input_values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Audio embeddings [batch, dim] (float32) of segments [batch, samples] whose first `valid` samples are real.

        Segments seen before come from the audio-embedding cache, keyed by their content (samples and length),
        so scoring the same recording again with other labels does not run the audio tower again. The cache
        holds at most `audio_cache_size` segments (least recently used go first; 0 turns it off).
        """
        keys = [_segment_key(row, int(n)) for row, n in zip(input_values, valid)]
        cache = self._audio_cache
        missing = [key for key in dict.fromkeys(keys) if key not in cache]
        if missing:
            rows = [keys.index(key) for key in missing]
            for key, embed in zip(missing, self.encode_segments(input_values[rows], valid[rows])):
                cache[key] = embed
        out = torch.stack([cache[key] for key in keys])
        for key in keys:
            cache.move_to_end(key)
        while len(cache) > self._audio_cache_size:
            cache.popitem(last=False)
        return out

    @torch.inference_mode()
    def encode_segments(self, input_values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The audio encoder of the current backend on segments [batch, samples], bypassing the cache."""
        device = self.model.device
        mask = (torch.arange(input_values.shape[-1], device=device) < valid.to(device).reshape(-1, 1)).long()
        if self._onnx is not None:
            embeds = torch.from_numpy(self._onnx.audio_embeddings(input_values.float().numpy(), mask.cpu().numpy()))
        else:
            embeds = self.model.get_audio_features(input_values.to(device, self.model.dtype), mask)
        if not torch.isfinite(embeds).all():
            # a last line of defence: audio_meralign refuses samples beyond full scale before they get here
            peak = float(input_values.abs().max())
            raise ValueError(
                f"audio gave non-finite features: its samples reach {peak:.3g} in magnitude, which overflows the "
                f"model in {str(self.model.dtype).replace('torch.', '')}; float audio is expected in [-1, 1]"
            )
        return embeds.float().cpu()

    def recording_embeddings(self, inputs, segment_seconds: float | None = None) -> tuple[torch.Tensor, list]:
        """One recording's segment embeddings [segments, dim] and their `(start, end)` seconds, exactly as a call
        of the pipeline scores them (same segments, batching and cache), without scoring: what a library of
        recordings stores once and scores with any labels later."""
        if segment_seconds is not None:
            _check_segment_covers_a_frame(self.model.config, float(segment_seconds))
        embeds, times, batch = [], [], []

        def run():
            values = torch.cat([item["input_values"] for item in batch])
            embeds.append(self.segment_embeddings(values, torch.tensor([item["valid"] for item in batch])))
            batch.clear()

        for item in self.preprocess(inputs, segment_seconds=segment_seconds):
            times.append((float(item["start"]), float(item["end"])))
            batch.append(item)
            if len(batch) == self._batch_size:
                run()
        if batch:
            run()
        return torch.cat(embeds), times

    def postprocess(
        self,
        model_outputs,
        candidate_labels=None,
        hypothesis_template=None,
        multi_label=False,
        top_k=None,
        aggregation=None,
        return_segments=False,
        return_affect=False,
    ):
        config = self.model.config
        aggregation = aggregation or getattr(config, "default_aggregation", "mean")
        audio = torch.cat([out["audio_embeds"] for out in model_outputs]).double()
        text = self.label_embeddings(candidate_labels, hypothesis_template).double()
        cosine = (audio @ text.t()).numpy()
        ranked, per_segment = score_recording(
            cosine,
            candidate_labels,
            calibration=self.calibration(),
            multi_label=multi_label,
            aggregation=aggregation,
            top_k=top_k,
        )
        if not (return_segments or return_affect):
            return ranked
        result = {"labels": [r["label"] for r in ranked], "scores": [r["score"] for r in ranked]}
        affect = self._affect(audio.numpy()) if return_affect else {}
        result.update({axis: float(values.mean()) for axis, values in affect.items()})
        if return_segments:
            result["segments"] = [
                {
                    "start": float(_scalar(out["start"])),
                    "end": float(_scalar(out["end"])),
                    "scores": {label: float(s) for label, s in zip(candidate_labels, row)},
                    **{axis: float(values[i]) for axis, values in affect.items()},
                }
                for i, (out, row) in enumerate(zip(model_outputs, per_segment))
            ]
        return result

    def _affect(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """Valence and arousal of segment embeddings [S, dim], through the model's anchor labels if it has them."""
        config = self.model.config
        anchors = config.affect_calibration.get("anchors")
        vectors = self.label_embeddings(anchors).double().numpy() if anchors else None
        logit_scale = self.calibration()["logit_scale"]
        return audio_affect(audio, config.label_space, config.affect_calibration, vectors, logit_scale)

    def calibration(self) -> dict:
        """The model's score calibration: softmax temperature (log scale) and the multi-label logistic."""
        config = self.model.config
        return {
            "logit_scale": self.model.logit_scale.item(),
            "multilabel_scale": config.multilabel_scale,
            "multilabel_bias": config.multilabel_bias,
        }

    # --------------------------------------------------------------------------------- label cache
    @torch.inference_mode()
    def label_embeddings(self, labels: list[str], template: str | None = None) -> torch.Tensor:
        """The label-space vectors [labels, dim] that scoring uses (CPU, float32).

        Each label is embedded under the model's label-space templates (or under `template` alone), through
        the label-space transform (`MERAlignModel.get_label_embeddings`), and averaged over its templates
        (`scoring_meralign.combine_templates`). Computed once per (templates, label) and cached (LRU, bounded).
        """
        config = self.model.config
        templates = tuple([template] if template else label_templates(config.label_space, config.hypothesis_template))
        cache = self._label_cache
        missing = list(dict.fromkeys(label for label in labels if (templates, label) not in cache))
        per_chunk = max(1, LABEL_BATCH_SIZE // len(templates))
        for first in range(0, len(missing), per_chunk):
            chunk = missing[first : first + per_chunk]
            texts = [t.format(label_text(label, config.label_space)) for label in chunk for t in templates]
            tokens = self.tokenizer(
                texts, padding=True, truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt"
            )
            if self._onnx is not None:
                text_vectors = self._onnx.label_embeddings(
                    tokens["input_ids"].numpy(), tokens["attention_mask"].numpy()
                )
            else:
                tokens = {k: v.to(self.device) for k, v in tokens.items()}
                text_vectors = self.model.get_label_embeddings(**tokens).float().cpu().numpy()
            for label, vector in zip(chunk, combine_templates(text_vectors, len(templates))):
                cache[(templates, label)] = torch.from_numpy(vector)
        stacked = torch.stack([cache[(templates, label)] for label in labels])
        for label in labels:
            cache.move_to_end((templates, label))
        while len(cache) > LABEL_CACHE_SIZE:
            cache.popitem(last=False)
        return stacked


def _segment_key(samples: torch.Tensor, valid: int) -> bytes:
    """What a segment's embedding depends on: its real samples and the segment length (padding is zeros)."""
    digest = hashlib.blake2b(samples[:valid].detach().cpu().contiguous().numpy().tobytes(), digest_size=16)
    digest.update(f"{valid}/{samples.shape[-1]}".encode())
    return digest.digest()


def _scalar(value):
    """Unbatched pipeline items carry metadata as 1-element lists; batch-1 items as plain values."""
    if isinstance(value, (list, tuple)):
        return value[0]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _is_hf_dataset(inputs) -> bool:
    return type(inputs).__module__.startswith("datasets") and hasattr(inputs, "column_names")


def _dataset_audio(dataset) -> types.GeneratorType:
    """Audio items of a `datasets.Dataset`, read undecoded (its decoder needs torchcodec/ffmpeg)."""
    try:
        from datasets import Audio
    except ImportError:  # pragma: no cover - a Dataset implies datasets is installed
        raise TypeError("a datasets.Dataset input needs the `datasets` package") from None
    features = dataset.features or {}  # an IterableDataset may not know its features
    columns = [name for name, feature in features.items() if isinstance(feature, Audio)]
    if not columns:
        raise ValueError(
            f"inputs: the dataset has no Audio column (columns: {dataset.column_names}); "
            "cast the audio column with datasets.Audio() first"
        )
    dataset = dataset.cast_column(columns[0], Audio(decode=False))
    return (row[columns[0]] for row in dataset)


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=ZeroShotMusicEmotionPipeline, pt_model=AutoModel, type="audio"
)
