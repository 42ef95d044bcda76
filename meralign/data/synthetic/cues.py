"""Cue profiles of the synthetic corpus's latent emotions, and the cues of one clip drawn around them.

Directions follow Juslin & Laukka (2003); docs/synthetic-corpus.md explains the corpus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from meralign.vocabularies import EMOTIONS


@dataclass(frozen=True)
class CueProfile:
    """Mean cue values of one emotion (or of one clip, after sampling and blending).

    Directions follow Juslin & Laukka's cue profiles: happiness fast/major/bright/staccato,
    sadness slow/minor/soft/low/legato/dull, anger fast/loud/sharp/dissonant, tenderness
    slow/soft/legato/major, fear (here "tense") irregular/dissonant/highly variable in loudness.
    """

    tempo: float  # beats per minute
    mode: tuple[float, float, float]  # probabilities of (major, minor, atonal)
    loudness: float  # target RMS level, dBFS
    dynamics: float  # 0..1: depth of swells, accent spread and tremolo
    register: float  # melody centre, MIDI note number
    articulation: float  # sounding fraction of the inter-onset interval: ~0.3 staccato .. 1 legato
    attack: float  # note attack time, seconds
    brightness: float  # 0 dull (steep harmonic roll-off) .. 1 bright (rich harmonics)
    dissonance: float  # 0..1: chance of dissonant harmony notes, depth of detuning (beating)
    density: float  # melody onsets per beat
    percussion: float  # 0..1: drum level
    irregularity: float  # 0..1: timing jitter


CUE_PROFILES: dict[str, CueProfile] = {
    "joyful": CueProfile(140, (0.85, 0.10, 0.05), -14, 0.30, 72, 0.45, 0.010, 0.70, 0.05, 2.0, 0.50, 0.05),
    "sad": CueProfile(66, (0.10, 0.85, 0.05), -26, 0.15, 55, 0.95, 0.120, 0.20, 0.10, 1.0, 0.00, 0.10),
    "tender": CueProfile(80, (0.80, 0.15, 0.05), -23, 0.20, 67, 0.90, 0.090, 0.25, 0.05, 1.0, 0.05, 0.05),
    "angry": CueProfile(150, (0.05, 0.35, 0.60), -10, 0.35, 52, 0.40, 0.004, 0.90, 0.80, 3.0, 0.90, 0.15),
    "calm": CueProfile(72, (0.70, 0.20, 0.10), -24, 0.10, 62, 1.00, 0.150, 0.30, 0.05, 0.75, 0.00, 0.03),
    "tense": CueProfile(110, (0.05, 0.45, 0.50), -18, 0.80, 70, 0.35, 0.020, 0.60, 0.65, 2.0, 0.30, 0.60),
    "solemn": CueProfile(58, (0.35, 0.60, 0.05), -17, 0.25, 48, 0.95, 0.080, 0.45, 0.10, 1.0, 0.25, 0.05),
    "powerful": CueProfile(120, (0.75, 0.20, 0.05), -11, 0.30, 50, 0.60, 0.008, 0.75, 0.15, 2.0, 0.85, 0.05),
}

# The documented valence and arousal of each latent emotion, in [-1, 1]: Warriner, Kuperman & Brysbaert (2013)
# mean ratings of the emotion's name (1-9 scales), rescaled as (x - 5) / 4 (benchmarks/norms/warriner_2013_vad.json).
# Independent of every model: they are what predicted valence and arousal are checked against.
EMOTION_AFFECT: dict[str, tuple[float, float]] = {
    "joyful": (0.8025, 0.1325),
    "sad": (-0.725, -0.3775),
    "tender": (0.3675, -0.445),
    "angry": (-0.6175, 0.30),
    "calm": (0.4725, -0.8325),
    "tense": (-0.5625, 0.08),
    "solemn": (-0.085, -0.525),
    "powerful": (0.365, 0.1025),
}

# Per-clip random variation around the profile: standard deviations (tempo, attack and density
# vary multiplicatively, as log-normal factors). Large enough that neighbouring emotions overlap.
CUE_SPREAD: dict[str, float] = {
    "tempo": 0.12,
    "loudness": 2.5,
    "dynamics": 0.10,
    "register": 3.0,
    "articulation": 0.10,
    "attack": 0.35,
    "brightness": 0.12,
    "dissonance": 0.10,
    "density": 0.20,
    "percussion": 0.12,
    "irregularity": 0.08,
}

# Secondary emotions a clip may carry with its main one (neighbours in valence/arousal space).
COMPATIBLE: dict[str, tuple[str, ...]] = {
    "joyful": ("powerful", "tender", "calm"),
    "sad": ("tender", "solemn", "tense", "calm"),
    "tender": ("calm", "sad", "joyful"),
    "angry": ("tense", "powerful"),
    "calm": ("tender", "solemn", "sad", "joyful"),
    "tense": ("angry", "sad", "solemn"),
    "solemn": ("sad", "calm", "powerful", "tense"),
    "powerful": ("joyful", "angry", "solemn"),
}


def check_emotions(emotions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(emotions, (str, bytes)) or not hasattr(emotions, "__iter__"):
        raise TypeError(f"emotions must be a sequence of emotion names, got {emotions!r}")
    names = tuple(emotions)
    if not names:
        raise ValueError(f"emotions must name at least one emotion out of {EMOTIONS}")
    for name in names:
        if name not in CUE_PROFILES:
            raise ValueError(f"emotions contains unknown emotion {name!r}; expected names from {EMOTIONS}")
    if len(set(names)) != len(names):
        raise ValueError(f"emotions must not repeat an emotion, got {names!r}")
    return names


_UNIT_CUES = ("dynamics", "articulation", "brightness", "dissonance", "percussion", "irregularity")


def _blend(profiles: Sequence[CueProfile], weights: np.ndarray) -> CueProfile:
    """Weighted mean of profiles, cue by cue (mode probabilities included)."""
    values = {}
    for f in fields(CueProfile):
        stacked = np.array([np.asarray(getattr(p, f.name), dtype=float) for p in profiles])
        mean = np.tensordot(weights, stacked, axes=1)
        values[f.name] = tuple(float(v) for v in mean) if f.name == "mode" else float(mean)
    return CueProfile(**values)


def clip_cues(emotions: tuple[str, ...], rng: np.random.Generator) -> tuple[CueProfile, str]:
    """Cues of one clip: the main emotion's profile, the others sharing 25-45 % of the blend, then jittered."""
    others = len(emotions) - 1
    share = rng.uniform(0.25, 0.45) if others else 0.0
    weights = np.array([1.0 - share] + [share / max(others, 1)] * others)
    mean = _blend([CUE_PROFILES[e] for e in emotions], weights)
    s = CUE_SPREAD
    jittered = {name: float(np.clip(getattr(mean, name) + rng.normal(0, s[name]), 0.0, 1.0)) for name in _UNIT_CUES}
    cues = replace(
        mean,
        tempo=float(np.clip(mean.tempo * math.exp(rng.normal(0, s["tempo"])), 40, 220)),
        loudness=float(np.clip(mean.loudness + rng.normal(0, s["loudness"]), -40, -6)),
        register=float(np.clip(mean.register + rng.normal(0, s["register"]), 40, 84)),
        attack=float(np.clip(mean.attack * math.exp(rng.normal(0, s["attack"])), 0.002, 0.4)),
        density=float(np.clip(mean.density * math.exp(rng.normal(0, s["density"])), 0.5, 4.0)),
        **jittered,
    )
    mode = ("major", "minor", "atonal")[int(rng.choice(3, p=np.array(mean.mode) / sum(mean.mode)))]
    return cues, mode
