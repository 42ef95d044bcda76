"""MERAlignModel: MERT audio features projected into a sentence-transformer's label embedding space.

Part of the model's remote code: imports only torch, transformers and the sibling configuration module,
so `AutoModel.from_pretrained(repo, trust_remote_code=True)` needs nothing else. The audio tower is
transformers' native `HubertModel` (MERT-v1 checkpoints are HuBERT-shaped; MERT's own remote code no
longer returns hidden states on transformers 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, HubertModel, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.utils import ModelOutput

try:
    from .configuration_meralign import HEAD_ARGUMENTS, HEAD_TYPES, POOLINGS, MERAlignConfig
    from .cpu_meralign import quantize_audio_tower_int8
    from .scoring_meralign import label_space_matrix
except ImportError:  # imported as a top-level module (local use, tests)
    from configuration_meralign import HEAD_ARGUMENTS, HEAD_TYPES, POOLINGS, MERAlignConfig
    from cpu_meralign import quantize_audio_tower_int8
    from scoring_meralign import label_space_matrix


@dataclass
class MERAlignOutput(ModelOutput):
    """Like CLAP/CLIP outputs: similarity logits both ways plus the normalised embeddings."""

    loss: torch.FloatTensor | None = None
    logits_per_audio: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def pool_frames(hidden: torch.Tensor, frame_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool [batch, frames, dim] over time: masked mean, or the first frame (the paper's choice)."""
    if pooling not in POOLINGS:  # a typo must not silently fall back to the mean
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "first":
        return hidden[:, 0]
    if frame_mask is None:
        return hidden.mean(dim=1)
    weights = frame_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def mean_pool_tokens(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling: average of the non-padding token states."""
    weights = attention_mask.to(token_states.dtype).unsqueeze(-1)
    return (token_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class MERAlignHead(nn.Module):
    """Maps pooled hidden states of the selected layers [batch, n_layers, hidden] to the joint space.

    `mlp`: the layers are concatenated and passed through LayerNorm -> Linear -> GELU -> Linear.
    `linear`: the concatenated layers through one Linear (the ridge-regression baseline, fitted in closed form).
    `attention`: each selected layer is a token (plus a learned layer embedding) for a small transformer
    encoder; its mean output is projected. Unlike the paper's head, which attends over a length-1
    sequence (a no-op for attention), this lets the head weigh layers against each other.
    The output is L2-normalised so a dot product with a label embedding is a cosine.
    """

    def __init__(
        self,
        n_layers: int,
        hidden_size: int,
        projection_size: int,
        head_type: str = "mlp",
        head_hidden_size: int = 768,
        head_num_layers: int = 2,
        head_num_heads: int = 8,
        head_dropout: float = 0.1,
    ):
        super().__init__()
        width = head_hidden_size
        self.head_type = head_type
        if head_type == "linear":
            self.net = nn.Linear(n_layers * hidden_size, projection_size)
        elif head_type == "mlp":
            self.net = nn.Sequential(
                nn.LayerNorm(n_layers * hidden_size),
                nn.Linear(n_layers * hidden_size, width),
                nn.GELU(),
                nn.Dropout(head_dropout),
                nn.Linear(width, projection_size),
            )
        elif head_type == "attention":
            self.input_proj = nn.Linear(hidden_size, width)
            self.layer_embedding = nn.Parameter(torch.zeros(n_layers, width))
            block = nn.TransformerEncoderLayer(
                width,
                head_num_heads,
                dim_feedforward=4 * width,
                dropout=head_dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(block, head_num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(width)
            self.output_proj = nn.Linear(width, projection_size)
        else:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {head_type!r}")

    @classmethod
    def from_config(cls, config: MERAlignConfig) -> MERAlignHead:
        """The head a model config describes (its sizes, and the selected layers' count and width)."""
        return cls(
            len(config.feature_layers),
            config.audio_config.hidden_size,
            config.projection_size,
            **{name: getattr(config, name) for name in HEAD_ARGUMENTS},
        )

    def forward(self, layer_features: torch.Tensor) -> torch.Tensor:
        if layer_features.dim() != 3:
            raise ValueError(
                f"layer_features must be [batch, n_layers, hidden], got shape {tuple(layer_features.shape)}"
            )
        if self.head_type in ("mlp", "linear"):
            projected = self.net(layer_features.flatten(1))
        else:
            tokens = self.input_proj(layer_features) + self.layer_embedding
            projected = self.output_proj(self.norm(self.encoder(tokens).mean(dim=1)))
        return F.normalize(projected, dim=-1)


FRONT_END_BATCH_AUTO = "auto"
# "auto" front-end slices on CPU hold at most this many samples (two 10 s segments at 24 kHz): MERT's first
# conv layer then outputs at most 512 x 96,000 floats (197 MB) at a time, whatever the batch size.
FRONT_END_AUTO_SAMPLES = 480_000


class MERAlignPreTrainedModel(PreTrainedModel):
    config_class = MERAlignConfig
    base_model_prefix = "meralign"
    main_input_name = "input_values"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules = ["HubertEncoderLayer", "BertLayer"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MERAlignModel):
            nn.init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        elif isinstance(module, MERAlignHead) and module.head_type == "attention":
            nn.init.normal_(module.layer_embedding, std=0.02)


class MERAlignModel(MERAlignPreTrainedModel):
    """Audio tower (HubertModel) + projection head + text tower (BertModel, mean pooled).

    API mirrors CLAP/CLIP: `get_audio_features`, `get_text_features`, `forward -> logits_per_audio`.
    """

    def __init__(self, config: MERAlignConfig):
        super().__init__(config)
        self.audio_model = HubertModel(config.audio_config)
        self.text_model = BertModel(config.text_config, add_pooling_layer=False)
        self.audio_head = MERAlignHead.from_config(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        # runtime performance options (not saved with the model): see `audio_front_end_batch`, `quantize_for_cpu`
        self._audio_front_end_batch: int | str = FRONT_END_BATCH_AUTO
        self._audio_int8 = False
        self.post_init()

    @classmethod
    def from_towers(cls, mert_name_or_path: str, text_name_or_path: str, **config_kwargs):
        """Assemble a MERAlignModel from a MERT checkpoint and a sentence-transformers checkpoint.

        Towers are loaded with their own `from_pretrained` here and their weights copied in, never inside
        `__init__` (transformers 5 builds models on the meta device, which breaks that pattern on reload).
        The head starts randomly initialised. Like `from_pretrained`, the model is returned in eval mode
        (MERT checkpoints carry dropout 0.1): call `.train()` to train the head.
        """
        audio = load_mert_tower(mert_name_or_path)
        text = load_text_tower(text_name_or_path)
        config = MERAlignConfig(
            audio_config=audio.config.to_dict(), text_config=text.config.to_dict(), **config_kwargs
        )
        model = cls(config)
        model.audio_model.load_state_dict(audio.state_dict())
        model.text_model.load_state_dict(text.state_dict())
        model.config.audio_name_or_path = str(mert_name_or_path)
        model.config.text_name_or_path = str(text_name_or_path)
        return model.eval()

    # ----------------------------------------------------------------------------------- audio side
    def audio_hidden_states(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, depth: int | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Hidden states 0..depth of the audio tower, and the frame-level mask.

        Runs the `HubertModel` submodules directly so the tower stops after the deepest layer the head
        uses (`depth`, default: that layer): layers past it cost time and change nothing. Index 0 is the
        input of the first transformer layer, index i the output of layer i, as in `output_hidden_states`.
        """
        tower = self.audio_model
        encoder = tower.encoder
        n_layers = len(encoder.layers)
        depth = self.config.max_feature_layer if depth is None else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= n_layers:
            # slicing the layer list would silently clamp or drop layers instead
            raise ValueError(f"depth must be an int in [0, {n_layers}] (the tower's layer count), got {depth!r}")
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be [batch, samples], got shape {tuple(input_values.shape)}")
        features = self._audio_front_end(input_values)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = tower._get_feature_vector_attention_mask(features.shape[1], attention_mask).bool()
        hidden = tower.feature_projection(features)
        if isinstance(hidden, tuple):  # some HuBERT-family projections also return the normed features
            hidden = hidden[0]
        if frame_mask is not None:
            hidden = hidden.masked_fill(~frame_mask.unsqueeze(-1), 0.0)
        mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=frame_mask)
        hidden = hidden + encoder.pos_conv_embed(hidden)
        stable = self.config.audio_config.do_stable_layer_norm
        if not stable:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        states = [hidden]
        for layer in encoder.layers[:depth]:
            hidden = layer(hidden, attention_mask=mask)
            states.append(hidden)
        if stable and depth == n_layers:
            # the stable-layer-norm encoder normalises its last output (HubertModel's last_hidden_state)
            states[-1] = encoder.layer_norm(hidden)
        return states, frame_mask

    # ------------------------------------------------------------------------ audio performance options
    @property
    def audio_front_end_batch(self) -> int | str:
        """How many segments the conv front end processes at once: an int, or "auto" (the default).

        The first conv layer turns each 10 s segment into 512 x 48,000 floats (98 MB), and its norm and
        activation make copies: a batch of 8 needs over a GB for that layer alone. On CPU the front end
        gains nothing from large batches, so "auto" slices the batch there to at most
        `FRONT_END_AUTO_SAMPLES` samples (two 10 s segments; peak memory flat in batch size) and runs the
        whole batch on accelerators. Each segment's convolutions and norms are independent of the others,
        so slicing changes results only by float rounding (kernels may pick another algorithm per shape).
        """
        return self._audio_front_end_batch

    @audio_front_end_batch.setter
    def audio_front_end_batch(self, value: int | str) -> None:
        if value != FRONT_END_BATCH_AUTO and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"audio_front_end_batch must be an int >= 1 or {FRONT_END_BATCH_AUTO!r}, got {value!r}")
        self._audio_front_end_batch = value

    def _audio_front_end(self, input_values: torch.Tensor) -> torch.Tensor:
        """The conv front end's frames [batch, frames, channels], in slices of `audio_front_end_batch` segments."""
        front_end = self.audio_model.feature_extractor
        chunk = self._audio_front_end_batch
        if chunk == FRONT_END_BATCH_AUTO:
            on_cpu = input_values.device.type == "cpu"
            chunk = (
                max(1, FRONT_END_AUTO_SAMPLES // max(1, input_values.shape[-1])) if on_cpu else input_values.shape[0]
            )
        if chunk >= input_values.shape[0]:
            return front_end(input_values).transpose(1, 2)
        # joined channel-major like the whole-batch output, so what follows sees the same memory layout
        return torch.cat([front_end(part) for part in input_values.split(chunk)]).transpose(1, 2)

    @property
    def is_quantized_for_cpu(self) -> bool:
        """True once `quantize_for_cpu` ran: the audio tower holds int8 weights and only runs on CPU."""
        return self._audio_int8

    def quantize_for_cpu(self, front_end_layers: int = 3) -> MERAlignModel:
        """Quantise the audio tower to int8 for CPU inference (in place; returns the model, in eval mode).

        Every `nn.Linear` of the tower (attention, feed-forward, feature projection) becomes PyTorch's
        dynamically quantised int8 Linear (int8 weights, activations quantised per call with one scale per
        batch tensor, so a segment's result shifts slightly with what it is batched with). The conv front
        end is about a third of MERT's FLOPs, almost all in its first layers (time halves at each): the
        `front_end_layers` conv layers after the first (default 3, about 90% of the front end's FLOPs) are
        rewritten as Linears over their input windows and quantised too, and the first layer's GroupNorm is
        folded into its conv (cpu_meralign.py). The later, short conv layers add more error than time, so
        they stay float, as do the positional conv, norms, attention products, the head and the text tower.

        Accuracy: the audio embedding keeps a cosine >= 0.99 to float32 on real-shaped clips (tested for
        tiny and mid-size towers; above 0.999 at MERT-95M size in benchmarks/). Use the float32 model where
        exact features matter (feature caches, training). A quantised model cannot be saved or moved to a
        GPU: quantise after loading.
        """
        if not self._audio_int8:
            quantize_audio_tower_int8(self, front_end_layers)
            self._audio_int8 = True
        return self.eval()

    def save_pretrained(self, *args, **kwargs):
        """As `PreTrainedModel.save_pretrained`, but refuses an int8-quantised model (its packed weights
        would not reload): save the float32 model and call `quantize_for_cpu` after loading it."""
        if getattr(self, "_audio_int8", False):
            raise ValueError(
                "this model's audio tower was quantised with quantize_for_cpu(): save the float32 model "
                "and quantise after loading it"
            )
        return super().save_pretrained(*args, **kwargs)

    def pooled_audio_layers(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str | None = None
    ) -> torch.Tensor:
        """The selected layers pooled over time: [batch, n_layers, hidden]. This is what the feature cache stores."""
        states, frame_mask = self.audio_hidden_states(input_values, attention_mask)
        pooling = pooling or self.config.pooling
        return torch.stack([pool_frames(states[i], frame_mask, pooling) for i in self.config.feature_layers], dim=1)

    def get_audio_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised audio embeddings [batch, projection_size]."""
        return self.audio_head(self.pooled_audio_layers(input_values, attention_mask))

    # ------------------------------------------------------------------------------------ text side
    def get_label_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids=None
    ) -> torch.Tensor:
        """The label-space vectors [batch, projection_size] of label texts: the text features through the model's
        saved label-space transform, normalize(M e) (scoring_meralign.py). A label's vector is the normalized
        mean of these over its templates (`scoring_meralign.combine_templates`); without a label space it is
        `get_text_features`. Scoring uses these vectors, and training targets them."""
        features = self.get_text_features(input_ids, attention_mask, token_type_ids)
        if self.config.label_space is None:
            return features
        matrix = label_space_matrix(self.config.label_space, features.shape[-1])
        return F.normalize(features @ torch.from_numpy(matrix).to(features), dim=-1)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids=None
    ) -> torch.Tensor:
        """L2-normalised mean-pooled text embeddings, equal to the sentence-transformer's `encode`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return F.normalize(mean_pool_tokens(tokens.last_hidden_state, attention_mask), dim=-1)

    # ------------------------------------------------------------------------------------- scoring
    def similarity_logits(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """logit_scale * cosine, [n_audio, n_text]."""
        return self.logit_scale.exp() * audio_embeds @ text_embeds.t()

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> MERAlignOutput:
        """`attention_mask` belongs to the text (as in CLAP); the audio mask is `audio_attention_mask`.

        Unknown keyword arguments are refused (a misspelled `audio_attention_mask` must not be ignored);
        `return_dict` is accepted for transformers' callers and the output is always a `MERAlignOutput`."""
        if input_values is None or input_ids is None:
            raise ValueError("forward needs both input_values (audio) and input_ids (text)")
        audio_embeds = self.get_audio_features(input_values, audio_attention_mask)
        text_embeds = self.get_text_features(input_ids, attention_mask, token_type_ids)
        logits_per_audio = self.similarity_logits(audio_embeds, text_embeds)
        return MERAlignOutput(
            logits_per_audio=logits_per_audio,
            logits_per_text=logits_per_audio.t(),
            audio_embeds=audio_embeds,
            text_embeds=text_embeds,
        )


# ------------------------------------------------------------------------------------------- building
# MERT-only fields: CQT front end (unused by MERT-v1 with feature_extractor_cqt false) and the extended
# encoder path (attention_relax, deepnorm) that v1-95M/330M inference never takes.
_MERT_ONLY_FIELDS = {
    "attention_relax",
    "deepnorm",
    "feature_extractor_cqt",
    "feature_extractor_cqt_bins",
    "sample_rate",
    "auto_map",
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
}


def mert_to_hubert_config(mert_config: dict):
    """Convert a MERT-v1 `config.json` dict to the equivalent `HubertConfig`.

    MERT-v1 without the CQT front end is HuBERT-shaped: every weight maps onto `HubertModel` under the
    same name, so the conversion only drops MERT-only fields and refuses the CQT variant.
    """
    from transformers import HubertConfig

    if not isinstance(mert_config, dict):
        raise TypeError(f"mert_config must be a dict (a parsed config.json), got {type(mert_config).__name__}")
    model_type = str(mert_config.get("model_type", "")).lower()
    if model_type not in ("mert", "mert_model", "hubert"):
        raise ValueError(
            f"mert_config has model_type {mert_config.get('model_type')!r}: expected a MERT (or HuBERT) config"
        )
    if mert_config.get("feature_extractor_cqt", False):
        raise ValueError(
            "mert_config uses the CQT front end (feature_extractor_cqt=true), which HubertModel cannot represent"
        )
    fields = {k: v for k, v in mert_config.items() if k not in _MERT_ONLY_FIELDS}
    return HubertConfig(**fields)


def _read_mert_config(path: str) -> dict:
    import json
    import os

    if os.path.isdir(path):
        config_file = os.path.join(path, "config.json")
    else:  # a Hub id: fetch only the config (uses the local cache when offline)
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as err:  # only the builder needs it, never a Hub user loading a model
            raise ImportError(
                "building from a MERT Hub id needs huggingface_hub; or pass a local checkpoint folder"
            ) from err

        config_file = hf_hub_download(path, "config.json")
    with open(config_file, encoding="utf-8") as f:
        return json.load(f)


def load_mert_tower(mert_name_or_path: str):
    """A `HubertModel` holding a MERT-v1 checkpoint (folder or Hub id), refusing any key mismatch."""
    hubert_config = mert_to_hubert_config(_read_mert_config(str(mert_name_or_path)))
    tower, info = HubertModel.from_pretrained(str(mert_name_or_path), config=hubert_config, output_loading_info=True)
    problems = {
        k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        details = "; ".join(f"{kind}: {', '.join(map(str, keys))}" for kind, keys in problems.items())
        raise ValueError(f"MERT checkpoint {mert_name_or_path!r} does not match the HuBERT layout ({details})")
    return tower


def load_text_tower(text_name_or_path: str):
    """The sentence-transformer's BertModel (no pooler: sentence-transformers mean-pools the tokens).

    The checkpoint's pooler weights are expected to go unused, so transformers' load report (which lists them
    as UNEXPECTED) is kept quiet; missing weights are checked here instead."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tower, info = BertModel.from_pretrained(
            str(text_name_or_path), add_pooling_layer=False, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise ValueError(f"text checkpoint {text_name_or_path!r} lacks weights: {', '.join(missing)}")
    return tower


def build_processors(config: MERAlignConfig, text_name_or_path: str):
    """The feature extractor (24 kHz, raw waveform: MERT does not normalise) and the text tokenizer."""
    from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor

    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=config.sampling_rate,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=True,
    )
    # trust_remote_code=False: a base-model folder's config.json names this remote code, and the tokenizer (a
    # plain BERT one) must load without asking to run it; config=the text tower's, so that AutoTokenizer does
    # not read that config.json as a plain config (transformers warns "a model of type `meralign`")
    tokenizer = AutoTokenizer.from_pretrained(
        str(text_name_or_path), trust_remote_code=False, config=config.text_config
    )
    return feature_extractor, tokenizer


MERAlignConfig.register_for_auto_class()
MERAlignModel.register_for_auto_class("AutoModel")
