"""MERAlignProcessor: the feature extractor and the tokenizer of a MERAlign model in one object (as ClapProcessor).

`AutoProcessor.from_pretrained(repo, trust_remote_code=True)` loads it; `model(**processor(text=..., audio=...))`
runs the model: the text keys are the tokenizer's, the audio ones are `input_values` and `audio_attention_mask`
(the names `MERAlignModel.forward` takes).

Part of the model's remote code: imports only transformers and the sibling scoring rules.
"""

from __future__ import annotations

from transformers import BatchFeature, ProcessorMixin

try:
    from .scoring_meralign import TEXT_MAX_LENGTH, apply_template, validate_labels
except ImportError:  # imported as a top-level module (local use, tests)
    from scoring_meralign import TEXT_MAX_LENGTH, apply_template, validate_labels


class MERAlignProcessor(ProcessorMixin):
    """Wraps a `Wav2Vec2FeatureExtractor` (raw 24 kHz waveform, not normalised, as MERT expects) and the text
    tower's tokenizer. Labels are turned into text with `hypothesis_template` (default: the bare label)."""

    def __init__(self, feature_extractor, tokenizer):
        super().__init__(feature_extractor, tokenizer)

    def __call__(self, text=None, audio=None, sampling_rate=None, hypothesis_template: str = "{}", **kwargs):
        """Tokenised labels and/or padded audio, as one `BatchFeature` (tensors when `return_tensors` is given)."""
        if text is None and audio is None:
            raise ValueError("give text (labels), audio, or both")
        return_tensors = kwargs.pop("return_tensors", None)
        if kwargs:
            raise TypeError(f"unexpected argument(s): {', '.join(sorted(kwargs))}")
        data = {}
        if text is not None:
            texts = apply_template(hypothesis_template, validate_labels(text, "text"))
            data.update(self.tokenizer(texts, padding=True, truncation=True, max_length=TEXT_MAX_LENGTH))
        if audio is not None:
            features = self.feature_extractor(
                audio,
                sampling_rate=sampling_rate or self.feature_extractor.sampling_rate,
                padding=True,
                return_attention_mask=True,
            )
            data["input_values"] = features["input_values"]
            data["audio_attention_mask"] = features["attention_mask"]
        return BatchFeature(data=data, tensor_type=return_tensors)


MERAlignProcessor.register_for_auto_class("AutoProcessor")
