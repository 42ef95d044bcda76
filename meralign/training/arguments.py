"""`python train.py fit` arguments: what a head is trained on and how."""

from __future__ import annotations

from dataclasses import dataclass, field

from configuration_meralign import HEAD_TYPES, POOLINGS
from meralign.losses import OBJECTIVES, REGULARIZER_FORMS
from meralign.runtime import MIXED_PRECISIONS

TARGETS = ("labels", "centers")
# The paper's training configuration, where it differs from the defaults: bare labels, its regulariser weight.
PAPER_CONFIGURATION = {"label_space": "paper", "regularizer": "push", "alpha": 2.5}


@dataclass
class FitArguments:
    """Train the projection head on a feature cache (`python train.py fit --help`)."""

    cache_dir: str = field(metadata={"help": "Feature cache written by `train.py extract`."})
    output_dir: str = field(metadata={"help": "Where the head, its config, metrics and checkpoints go."})
    train_datasets: list[str] = field(
        default_factory=list, metadata={"help": "Dataset names in the cache to train on (default: all)."}
    )
    vocabularies: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Overrides as dataset=source (a built-in name or a label file); built-in and synthetic dataset "
            "names resolve by themselves."
        },
    )
    pooling: str = field(
        default="mean",
        metadata={"help": "Cached time pooling to train on: 'mean' (ours) or 'first' (the paper's frame 0)."},
    )
    head_type: str = field(
        default="mlp", metadata={"help": "'mlp' or 'attention' (a transformer over the selected layers)."}
    )
    head_hidden_size: int = field(default=768, metadata={"help": "Width of the head."})
    head_num_layers: int = field(default=2, metadata={"help": "Transformer layers of the attention head."})
    head_num_heads: int = field(default=8, metadata={"help": "Attention heads of the attention head."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout inside the head."})
    targets: str = field(
        default="labels",
        metadata={
            "help": "Triplet targets: 'labels' (label embeddings) or 'centers' (their Mean Shift cluster centres, "
            "the paper's clustering baseline)."
        },
    )
    regularizer: str = field(
        default="push", metadata={"help": "Alignment regulariser: 'push' (the paper's), 'pull_push', or 'none'."}
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the alignment regulariser (paper: 2.5). 0.5 was chosen on training-validation F1: "
            "at 2.5 the regulariser outweighs the triplet loss and the head falls behind a linear map on unseen "
            "words (docs/label-space.md)."
        },
    )
    margin: float = field(default=1.0, metadata={"help": "Triplet margin on cosine similarity (paper: 1.0)."})
    objective: str = field(
        default="triplet",
        metadata={"help": "'triplet' (the paper's) or 'contrastive' (softmax over every label of the vocabulary)."},
    )
    temperature: float = field(default=0.05, metadata={"help": "Temperature of the contrastive objective."})
    affect_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a loss tying the audio embedding's valence/arousal (on the label space's axes) to its "
            "labels' (0: off)."
        },
    )
    n_negatives: int = field(
        default=5, metadata={"help": "Random non-positive labels averaged into each negative target (paper: 5)."}
    )
    quantile: float | None = field(
        default=None,
        metadata={
            "help": "Mean Shift bandwidth quantile (ignored with --bandwidth); unset: the smallest quantile that "
            "keeps each label's nearest neighbour, which avoids both collapse and over-merging."
        },
    )
    bandwidth: float | None = field(
        default=None, metadata={"help": "Mean Shift bandwidth; estimated from --quantile when unset."}
    )
    label_space: str = field(
        default="default",
        metadata={
            "help": "The label space the head is trained into and the model scores in: 'default' (bare labels "
            "with valence/arousal axes for return_affect), 'affect' (a template ensemble with the affect axes "
            "stretched 4x: closest to human affect judgements, weaker at classification), 'paper' (bare labels, "
            "no axes) or a JSON file (a recipe or a built label space). See docs/label-space.md."
        },
    )
    hypothesis_template: str = field(
        default="{}",
        metadata={"help": "With --label_space paper: the text template for labels, e.g. 'music that sounds {}'."},
    )
    batch_size: int = field(default=256, metadata={"help": "Segments per dataset per step (paper: 256)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    max_epochs: int = field(
        default=30, metadata={"help": "Upper bound on epochs (an epoch covers the largest training dataset once)."}
    )
    patience: int = field(default=5, metadata={"help": "Early stopping: epochs without validation improvement."})
    seed: int = field(default=0, metadata={"help": "Seed of every random choice; a run is deterministic on CPU."})
    mixed_precision: str = field(
        default="no", metadata={"help": "accelerate mixed precision: 'no', 'bf16' or 'fp16'."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last complete checkpoint in output_dir."})
    log_with: str = field(
        default="tensorboard", metadata={"help": "'tensorboard' or 'none' (metrics.jsonl is always written)."}
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        choices = {
            "pooling": POOLINGS,
            "targets": TARGETS,
            "regularizer": (*REGULARIZER_FORMS, "none"),
            "mixed_precision": MIXED_PRECISIONS,
            "log_with": ("tensorboard", "none"),
            "head_type": HEAD_TYPES,
            "objective": OBJECTIVES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("batch_size", "max_epochs", "patience", "n_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if not self.affect_weight >= 0:
            raise ValueError(f"--affect_weight must be >= 0, got {self.affect_weight}")
