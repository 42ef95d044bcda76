"""A deterministic, cue-controlled synthetic music-emotion corpus for the demo, tests and benchmarks.

Real emotion datasets cannot ship with the project, yet every stage (feature cache, label
alignment, head training, leave-one-dataset-out evaluation) needs audio whose emotion is known.
This module renders short clips whose emotion is carried by the acoustic cues music psychology
documents for expressed emotion (Juslin & Laukka 2003, "Communication of emotions in vocal
expression and music performance"; Juslin 2001): mode, tempo, loudness and its variability,
register, articulation, attack, timbre brightness, dissonance, rhythmic density, percussion and
timing regularity. Each latent emotion has a cue profile (``CUE_PROFILES``); every clip draws its
cues around the profile, so neighbouring emotions (joyful/powerful, sad/tender/calm, angry/tense)
overlap as real music does. A clip may carry a secondary, compatible emotion whose cues are
blended in, and then carries both labels.

The same eight latent emotions are exposed through four vocabularies. The three training-style
datasets imitate MTG-Jamendo tags, CAL500 phrases and Emotify GEMS words; each omits one emotion
(every emotion still appears in two of them, so each leave-one-dataset-out run has seen every
test emotion somewhere) and has its own prior. ``synth-zeroshot`` uses plain adjectives sharing
no word with the others and exists only for zero-shot testing (all its tracks are "test").

================  ==================  ==================  ===================  ================
latent emotion    synth-jamendo       synth-cal500        synth-emotify        synth-zeroshot
================  ==================  ==================  ===================  ================
joyful            cheerful            happy, cheerful     joyful_activation    merry
sad               sad                 sad                 sadness              heartbroken
tender            love                touching, loving    tenderness           affectionate
angry             aggressive          angry, aggressive   --                   hostile
calm              calm                calming, soothing   calmness             peaceful
tense             suspense            --                  tension              suspenseful
solemn            --                  solemn, dignified   solemnity            grave
powerful          powerful            powerful, strong    power                mighty
================  ==================  ==================  ===================  ================

Why these words: the model maps audio into the all-MiniLM-L6-v2 sentence-embedding space, so
transfer between vocabularies works only if one emotion's words lie close together there and
different emotions' words lie apart. The words were chosen with that model: across every ordered
pair of vocabularies, a label's nearest label (cosine) in the other vocabulary is the same
emotion's label in 76 of 78 cases (misses: "cheerful" -> "calmness" by 0.51 vs 0.50, and
"suspenseful" -> "calmness" by 0.46 vs 0.43). ``label_alignment`` recomputes this check.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from meralign.data.adapters import split_by_track
from meralign.data.tracks import Track
from meralign.vocabularies import Vocabulary

__all__ = [
    "CUE_PROFILES",
    "CUE_SPREAD",
    "COMPATIBLE",
    "DATASETS",
    "DATASET_SPECS",
    "EMOTIONS",
    "LABEL_TABLE",
    "SAMPLING_RATE",
    "SYNTHETIC_VOCABULARIES",
    "TRAINING_DATASETS",
    "ZERO_SHOT_DATASETS",
    "CueProfile",
    "DatasetSpec",
    "generate_corpus",
    "label_alignment",
    "manifest_path",
    "render_clip",
]

SAMPLING_RATE = 24000
# Part of every WAV's fingerprint: bump it when the rendering changes, so that a rerun of
# generate_corpus re-renders files made by an older generator instead of keeping them.
GENERATOR_VERSION = 1

EMOTIONS: tuple[str, ...] = ("joyful", "sad", "tender", "angry", "calm", "tense", "solemn", "powerful")


@dataclass(frozen=True)
class CueProfile:
    """Mean cue values of one emotion (or of one clip, after sampling and blending).

    Directions follow Juslin & Laukka's cue profiles: happiness fast/major/bright/staccato,
    sadness slow/minor/soft/low/legato/dull, anger fast/loud/sharp/dissonant, tenderness
    slow/soft/legato/major, fear (here "tense") irregular/dissonant/highly variable in loudness.
    """

    tempo: float          # beats per minute
    mode: tuple[float, float, float]  # probabilities of (major, minor, atonal)
    loudness: float       # target RMS level, dBFS
    dynamics: float       # 0..1: depth of swells, accent spread and tremolo
    register: float       # melody centre, MIDI note number
    articulation: float   # sounding fraction of the inter-onset interval: ~0.3 staccato .. 1 legato
    attack: float         # note attack time, seconds
    brightness: float     # 0 dull (steep harmonic roll-off) .. 1 bright (rich harmonics)
    dissonance: float     # 0..1: chance of dissonant harmony notes, depth of detuning (beating)
    density: float        # melody onsets per beat
    percussion: float     # 0..1: drum level
    irregularity: float   # 0..1: timing jitter


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

# Per-clip random variation around the profile: standard deviations (tempo, attack and density
# vary multiplicatively, as log-normal factors). Large enough that neighbouring emotions overlap.
CUE_SPREAD: dict[str, float] = {
    "tempo": 0.12, "loudness": 2.5, "dynamics": 0.10, "register": 3.0, "articulation": 0.10,
    "attack": 0.35, "brightness": 0.12, "dissonance": 0.10, "density": 0.20, "percussion": 0.12,
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

# Latent emotion -> label in each vocabulary (None: the dataset lacks that emotion).
LABEL_TABLE: dict[str, dict[str, str | None]] = {
    "joyful": {"synth-jamendo": "cheerful", "synth-cal500": "happy, cheerful",
               "synth-emotify": "joyful_activation", "synth-zeroshot": "merry"},
    "sad": {"synth-jamendo": "sad", "synth-cal500": "sad", "synth-emotify": "sadness",
            "synth-zeroshot": "heartbroken"},
    "tender": {"synth-jamendo": "love", "synth-cal500": "touching, loving", "synth-emotify": "tenderness",
               "synth-zeroshot": "affectionate"},
    "angry": {"synth-jamendo": "aggressive", "synth-cal500": "angry, aggressive", "synth-emotify": None,
              "synth-zeroshot": "hostile"},
    "calm": {"synth-jamendo": "calm", "synth-cal500": "calming, soothing", "synth-emotify": "calmness",
             "synth-zeroshot": "peaceful"},
    "tense": {"synth-jamendo": "suspense", "synth-cal500": None, "synth-emotify": "tension",
              "synth-zeroshot": "suspenseful"},
    "solemn": {"synth-jamendo": None, "synth-cal500": "solemn, dignified", "synth-emotify": "solemnity",
               "synth-zeroshot": "grave"},
    "powerful": {"synth-jamendo": "powerful", "synth-cal500": "powerful, strong", "synth-emotify": "power",
                 "synth-zeroshot": "mighty"},
}


@dataclass(frozen=True)
class DatasetSpec:
    """How one synthetic dataset draws its tracks.

    ``priors`` maps each of its emotions to the probability of being a clip's main emotion;
    ``secondary_probability`` is the chance of a second, compatible label, chosen so that the
    mean number of labels per clip is close to the vocabulary's ``top_k``.
    """

    name: str
    priors: dict[str, float]
    secondary_probability: float
    top_k: int
    zero_shot: bool = False

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(e for e in EMOTIONS if e in self.priors)

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.name, tuple(LABEL_TABLE[e][self.name] for e in self.emotions), self.top_k)  # type: ignore[misc]


DATASET_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (
        # Pop/library-music flavour: mostly upbeat; one label per clip, like top-1 tagging.
        DatasetSpec("synth-jamendo", {"joyful": 0.22, "sad": 0.12, "tender": 0.10, "angry": 0.12, "calm": 0.15,
                                      "tense": 0.11, "powerful": 0.18}, 0.15, top_k=1),
        # Song-rating flavour: gentle moods dominate; usually two labels per clip.
        DatasetSpec("synth-cal500", {"joyful": 0.22, "sad": 0.14, "tender": 0.18, "angry": 0.08, "calm": 0.18,
                                     "solemn": 0.08, "powerful": 0.12}, 0.8, top_k=2),
        # GEMS / classical flavour: calm, solemn, tender and tense music; usually two labels.
        DatasetSpec("synth-emotify", {"joyful": 0.12, "sad": 0.14, "tender": 0.16, "calm": 0.18, "tense": 0.14,
                                      "solemn": 0.16, "powerful": 0.10}, 0.8, top_k=2),
        # Only for zero-shot testing: every emotion, equally likely.
        DatasetSpec("synth-zeroshot", {e: 1 / len(EMOTIONS) for e in EMOTIONS}, 0.15, top_k=1, zero_shot=True),
    )
}

DATASETS: dict[str, Vocabulary] = {name: spec.vocabulary for name, spec in DATASET_SPECS.items()}
SYNTHETIC_VOCABULARIES = DATASETS
TRAINING_DATASETS: tuple[str, ...] = tuple(n for n, s in DATASET_SPECS.items() if not s.zero_shot)
ZERO_SHOT_DATASETS: tuple[str, ...] = tuple(n for n, s in DATASET_SPECS.items() if s.zero_shot)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

def _check_emotions(emotions: Sequence[str]) -> tuple[str, ...]:
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


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)):
        raise TypeError(f"seconds must be a number, got {seconds!r} ({type(seconds).__name__})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    return float(seconds)


def _check_sampling_rate(sampling_rate: int) -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        raise TypeError(f"sampling_rate must be an int (Hz), got {sampling_rate!r} ({type(sampling_rate).__name__})")
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate}")
    if sampling_rate < 8000:
        # Below this the melody's upper register would alias: the cues would no longer be the ones documented.
        raise ValueError(f"sampling_rate must be at least 8000 Hz, got {sampling_rate}")
    return int(sampling_rate)


# --------------------------------------------------------------------------------------------
# Cues of one clip
# --------------------------------------------------------------------------------------------

_UNIT_CUES = ("dynamics", "articulation", "brightness", "dissonance", "percussion", "irregularity")


def _blend(profiles: Sequence[CueProfile], weights: np.ndarray) -> CueProfile:
    """Weighted mean of profiles, cue by cue (mode probabilities included)."""
    values = {}
    for f in fields(CueProfile):
        stacked = np.array([np.asarray(getattr(p, f.name), dtype=float) for p in profiles])
        mean = np.tensordot(weights, stacked, axes=1)
        values[f.name] = tuple(float(v) for v in mean) if f.name == "mode" else float(mean)
    return CueProfile(**values)


def _clip_cues(emotions: tuple[str, ...], rng: np.random.Generator) -> tuple[CueProfile, str]:
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


# --------------------------------------------------------------------------------------------
# Score: note events
# --------------------------------------------------------------------------------------------

# Natural minor, so that the i, iv and v chords are all minor and the mode is audible in every bar.
_SCALES = {"major": np.array([0, 2, 4, 5, 7, 9, 11]), "minor": np.array([0, 2, 3, 5, 7, 8, 10])}
_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 0, 4))


@dataclass
class _Notes:
    """Parallel arrays of note events of one voice."""

    onset: np.ndarray     # seconds
    duration: np.ndarray  # seconds, before release
    pitch: np.ndarray     # MIDI, fractional allowed
    amp: np.ndarray


def _degree_pitch(tonic: float, scale: np.ndarray, degree: np.ndarray) -> np.ndarray:
    return tonic + scale[degree % 7] + 12 * (degree // 7)


def _bar_chords(mode: str, n_bars: int, rng: np.random.Generator) -> np.ndarray:
    """Scale degree of each bar's chord root (a common progression, repeated); unused when atonal."""
    if mode == "atonal":
        return np.zeros(n_bars, dtype=np.int64)
    progression = np.array(_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])
    return progression[np.arange(n_bars) % 4]


def _snap_to_chord(degree: np.ndarray, chord_root: np.ndarray) -> np.ndarray:
    """Move each scale degree to the nearest tone of its chord (root, third or fifth)."""
    offsets = np.array([0, -1, 1, -2, 2, -3, 3])
    candidates = degree[:, None] + offsets[None, :]
    is_chord_tone = np.isin((candidates - chord_root[:, None]) % 7, (0, 2, 4))
    return candidates[np.arange(degree.size), np.argmax(is_chord_tone, axis=1)]


def _melody(cues: CueProfile, mode: str, tonic: int, chords: np.ndarray, seconds: float,
            rng: np.random.Generator) -> tuple[_Notes, np.ndarray]:
    """Onsets at ``density`` per beat with jitter and rests; a random walk over the scale (or chromatic).

    Tonal melodies land on chord tones half of the time, as real melodies do on strong beats;
    that is what makes the mode audible in a few seconds. Also returns, per note, the consonant
    harmony pitch (a diatonic third below; any third when atonal).
    """
    beat = 60.0 / cues.tempo
    ioi = beat / cues.density
    onset = np.arange(0.0, seconds, ioi)
    onset = onset + rng.normal(0, 0.25 * cues.irregularity * ioi, onset.size)
    keep = (rng.random(onset.size) > 0.12) & (onset >= 0) & (onset < seconds - 0.05)
    onset = np.sort(onset[keep])
    n = onset.size
    if mode == "atonal":
        steps = rng.choice([-6, -5, -3, -2, -1, 1, 2, 3, 5, 6], size=n)
        pitch = cues.register + (np.cumsum(steps) + 9) % 18 - 9  # a chromatic walk folded into +-9 semitones
        third = pitch - rng.choice([3, 4], size=n)
    else:
        steps = rng.choice([-2, -1, 0, 1, 2], size=n, p=[0.15, 0.3, 0.1, 0.3, 0.15])
        degree = np.clip(np.cumsum(steps), -5, 5) + 7 * 4
        bar = np.minimum((onset // (4 * beat)).astype(np.int64), chords.size - 1)
        snap = rng.random(n) < 0.5
        degree = np.where(snap, _snap_to_chord(degree, chords[bar]), degree)
        base = tonic + 12 * round((cues.register - tonic) / 12) - 48
        pitch = _degree_pitch(base, _SCALES[mode], degree)
        third = _degree_pitch(base, _SCALES[mode], degree - 2)
    duration = np.full(n, cues.articulation * ioi)
    amp = 1.0 - cues.dynamics * rng.uniform(0.0, 0.6, n)  # accents: spread grows with dynamics
    return _Notes(onset, duration, pitch.astype(float), amp), third.astype(float)


def _harmony(melody: _Notes, third: np.ndarray, cues: CueProfile, rng: np.random.Generator) -> _Notes:
    """A second voice: dissonant intervals (m2, tritone, M7) with probability ``dissonance``, else
    sometimes the consonant third below."""
    n = melody.onset.size
    dissonant = rng.random(n) < cues.dissonance
    consonant = ~dissonant & (rng.random(n) < 0.35)
    pitch = np.where(dissonant, melody.pitch + rng.choice([1, 6, 11, -1], size=n), third)
    use = dissonant | consonant
    return _Notes(melody.onset[use], melody.duration[use], pitch[use], 0.6 * melody.amp[use])


def _accompaniment(cues: CueProfile, mode: str, tonic: int, chords: np.ndarray, seconds: float,
                   rng: np.random.Generator) -> tuple[_Notes, _Notes]:
    """Bass on the beat (every other beat when slow) and a sustained triad per 4-beat bar."""
    beat = 60.0 / cues.tempo
    bar_onsets = 4 * beat * np.arange(chords.size)
    bass_step = beat if cues.density >= 1.5 else 2 * beat
    bass_onsets = np.arange(0.0, seconds, bass_step)
    if mode == "atonal":
        roots = rng.integers(0, 12, chords.size).astype(float)
        third = rng.choice([3, 4, 1, 6], size=chords.size).astype(float)
        fifth = rng.choice([7, 6, 8, 11], size=chords.size).astype(float)
    else:
        scale = _SCALES[mode]
        roots = scale[chords].astype(float)
        third = (_degree_pitch(0, scale, chords + 2) - roots).astype(float)
        fifth = (_degree_pitch(0, scale, chords + 4) - roots).astype(float)
    bass_octave = tonic + 12 * round((min(cues.register - 24, 50) - tonic) / 12)
    bar_of_bass = np.minimum((bass_onsets // (4 * beat)).astype(np.int64), chords.size - 1)
    bass = _Notes(bass_onsets, np.full(bass_onsets.size, cues.articulation * bass_step),
                  bass_octave + roots[bar_of_bass], np.full(bass_onsets.size, 0.7))
    pad_octave = tonic + 12 * round((cues.register - 12 - tonic) / 12)
    chord = np.stack([roots, roots + third, roots + fifth], axis=1)
    if cues.dissonance > 0:  # clusters: a semitone above the root in some bars
        cluster = rng.random(chords.size) < cues.dissonance
        chord = np.concatenate([chord, (roots + np.where(cluster, 1, np.nan))[:, None]], axis=1)
    pitch = (pad_octave + chord).ravel()
    onset = np.repeat(bar_onsets, chord.shape[1])
    valid = ~np.isnan(pitch)
    level = 0.1 + 0.25 * cues.articulation  # pads belong to legato styles
    pad = _Notes(onset[valid], np.full(valid.sum(), 4 * beat * 0.98), pitch[valid], np.full(valid.sum(), level))
    return bass, pad


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------

_TABLE_SIZE = 4096
_MAX_HARMONICS = 16
_HARMONIC_NUMBERS = np.arange(1, _MAX_HARMONICS + 1)
_SINES = np.sin(np.outer(_HARMONIC_NUMBERS, 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE))


def _wavetables(brightness: float) -> np.ndarray:
    """One period of the timbre for 1..16 harmonics (rows): amplitudes k**-p, p from brightness.

    A row per harmonic count lets each note drop the partials above Nyquist (no aliasing) while
    keeping the same spectral slope, so brightness stays a property of the clip, not of pitch.
    """
    amps = _HARMONIC_NUMBERS ** -(3.2 - 2.8 * brightness)
    return (np.cumsum(amps[:, None] * _SINES, axis=0) / amps.sum() * 2.0).astype(np.float32)


def _midi_to_hz(pitch: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _render_voice(out: np.ndarray, notes: _Notes, tables: np.ndarray, attack: float, release: float,
                  detune: float, sampling_rate: int) -> None:
    """Add ADSR-enveloped wavetable notes to ``out``; a detuned twin adds beating (roughness).

    Notes of equal duration share one envelope and are rendered as one matrix (vectorised);
    only the overlap-add into ``out`` loops over notes.
    """
    n_out = out.size
    nyquist = 0.45 * sampling_rate
    freq = _midi_to_hz(notes.pitch)
    start = (notes.onset * sampling_rate).astype(np.int64)
    playable = (start < n_out) & (freq < nyquist)
    for dur in np.unique(notes.duration[playable]):
        group = np.flatnonzero(playable & (notes.duration == dur))
        t = np.arange(int((dur + release) * sampling_rate)) / sampling_rate
        a = min(attack, 0.5 * dur)
        d = a + min(0.08, 0.5 * dur)
        env = np.interp(t, [0.0, a, d, max(dur, d), max(dur, d) + release], [0.0, 1.0, 0.7, 0.55, 0.0])
        # Row offsets into the flattened tables: one gather instead of 2-D fancy indexing.
        offset = (np.minimum(_MAX_HARMONICS, (nyquist // freq[group]).astype(np.int64)) - 1)[:, None] * _TABLE_SIZE
        phase = np.outer(freq[group] * _TABLE_SIZE, t)
        flat = tables.ravel()
        wave = flat[offset + (phase.astype(np.int64) & (_TABLE_SIZE - 1))]
        if detune > 0:
            wave += flat[offset + ((phase * (1 + detune)).astype(np.int64) & (_TABLE_SIZE - 1))]
            wave *= 0.6
        wave *= (env * notes.amp[group, None]).astype(np.float32)
        for row, s0 in enumerate(start[group]):
            stop = min(n_out, s0 + t.size)
            out[s0:stop] += wave[row, : stop - s0]


def _percussion(out: np.ndarray, cues: CueProfile, seconds: float, sampling_rate: int,
                rng: np.random.Generator) -> None:
    """Kick on every beat, noise snare on 2 and 4, noise hi-hats on eighths (sixteenths when driving)."""
    if cues.percussion < 0.08:
        return
    beat = 60.0 / cues.tempo
    jitter = 0.1 * cues.irregularity * beat
    n_out = out.size
    hit_len = int(0.15 * sampling_rate)
    t = np.arange(hit_len) / sampling_rate
    kick = np.sin(2 * np.pi * (45 * t + 40 * 0.03 * (1 - np.exp(-t / 0.03)))) * np.exp(-t / 0.08)
    hat_step = beat / 4 if cues.percussion > 0.6 and cues.tempo > 100 else beat / 2
    hits = [(o, "kick") for o in np.arange(0.0, seconds, beat)]
    hits += [(o, "snare") for o in np.arange(beat, seconds, 2 * beat)]
    hits += [(o, "hat") for o in np.arange(0.0, seconds, hat_step)]
    for onset, kind in hits:
        start = int(max(0.0, onset + rng.normal(0, jitter)) * sampling_rate)
        stop = min(n_out, start + hit_len)
        if stop <= start:
            continue
        m = stop - start
        if kind == "kick":
            sound = 1.0 * kick[:m]
        else:
            noise = rng.standard_normal(m)
            if kind == "hat":  # differencing tilts white noise towards the top octave
                sound = 0.35 * np.diff(noise, prepend=0.0) * np.exp(-t[:m] / 0.025)
            else:
                sound = 0.6 * noise * np.exp(-t[:m] / 0.06)
        out[start:stop] += cues.percussion * (1.0 - 0.5 * cues.dynamics * rng.random()) * sound


def _dynamics_envelope(cues: CueProfile, n: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Slow swells whose depth grows with ``dynamics``; tremolo for the most variable styles.

    Computed at a 1 ms control rate and interpolated: the envelope is far slower than audio.
    """
    t = np.arange(n) / sampling_rate
    tc = np.arange(0.0, n / sampling_rate + 0.002, 0.001)
    env = 1.0 + 0.7 * cues.dynamics * np.sin(2 * np.pi * tc / rng.uniform(2.0, 5.0) + rng.uniform(0, 2 * np.pi))
    if cues.dynamics > 0.5:
        env *= 1.0 + 0.8 * (cues.dynamics - 0.5) * np.sin(2 * np.pi * rng.uniform(5.0, 8.0) * tc)
    return np.interp(t, tc, np.maximum(env, 0.05))


def render_clip(emotions: Sequence[str], seed: int, seconds: float = 6.0,
                sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Render one clip expressing ``emotions`` (main emotion first; the others share 25-45 % of the cues).

    Deterministic for ``seed``. Returns float32 mono samples, peak <= 1, at ``sampling_rate``.
    """
    names = _check_emotions(emotions)
    seed = _check_seed(seed)
    seconds = _check_seconds(seconds)
    sampling_rate = _check_sampling_rate(sampling_rate)
    rng = np.random.default_rng(seed)
    cues, mode = _clip_cues(names, rng)
    tonic = int(rng.integers(0, 12))
    n = max(1, int(round(seconds * sampling_rate)))
    chords = _bar_chords(mode, max(1, math.ceil(seconds * cues.tempo / 240.0)), rng)
    melody, third = _melody(cues, mode, tonic, chords, seconds, rng)
    harmony = _harmony(melody, third, cues, rng)
    bass, pad = _accompaniment(cues, mode, tonic, chords, seconds, rng)
    detune = 0.03 * max(0.0, cues.dissonance - 0.2)  # beating only where dissonance is a cue
    release = 0.02 + 0.3 * cues.articulation ** 2
    lead_tables = _wavetables(cues.brightness)
    soft_tables = _wavetables(0.6 * cues.brightness)
    out = np.zeros(n)
    _render_voice(out, melody, lead_tables, cues.attack, release, detune, sampling_rate)
    _render_voice(out, harmony, lead_tables, cues.attack, release, detune, sampling_rate)
    _render_voice(out, bass, soft_tables, max(cues.attack, 0.01), release, detune, sampling_rate)
    _render_voice(out, pad, soft_tables, max(cues.attack, 0.05), 0.3, detune, sampling_rate)
    _percussion(out, cues, seconds, sampling_rate, rng)
    out *= _dynamics_envelope(cues, n, sampling_rate, rng)
    return _finish(out, cues.loudness, sampling_rate)


def _finish(out: np.ndarray, loudness_db: float, sampling_rate: int) -> np.ndarray:
    """Set the RMS level, fade the edges, soft-limit to (-1, 1) (saturation, like a loud master)."""
    rms = math.sqrt(float(np.mean(out ** 2)))
    if rms > 0:
        out = out * (10.0 ** (loudness_db / 20.0) / rms)
    fade = min(out.size // 2, int(0.01 * sampling_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[out.size - fade:] *= ramp[::-1]
    return np.clip(np.tanh(out), -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

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


def _atomic_write(path: Path, write: Callable[[str], None], suffix: str) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fingerprint(dataset: str, index: int, seed: int, seconds: float, sampling_rate: int,
                 emotions: tuple[str, ...]) -> str:
    return (f"meralign-synthetic v{GENERATOR_VERSION} dataset={dataset} index={index} seed={seed} "
            f"seconds={seconds!r} sr={sampling_rate} emotions={'+'.join(emotions)}")


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
    def write(tmp: str) -> None:
        with sf.SoundFile(tmp, "w", sampling_rate, 1, subtype="PCM_16", format="WAV") as f:
            f.comment = fingerprint  # stored in the WAV's INFO chunk; read back to decide skipping
            f.write(audio)

    _atomic_write(path, write, ".wav.tmp")


def _write_manifest(path: Path, tracks: list[Track], root: Path) -> None:
    lines = [json.dumps({"track_id": t.track_id, "path": str(Path(t.audio).relative_to(root)),
                         "labels": list(t.labels), "split": t.split, "emotions": t.extra["emotions"]})
             for t in tracks]

    def write(tmp: str) -> None:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")

    _atomic_write(path, write, ".jsonl.tmp")


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


def _dataset_tracks(root: Path, spec: DatasetSpec, seed: int, count: int, seconds: float,
                    sampling_rate: int) -> list[Track]:
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
    return [Track(track_id=tid, audio=str(path), labels=tuple(LABEL_TABLE[e][spec.name] for e in emotions),  # type: ignore[misc]
                  split=splits[tid], dataset=spec.name, extra={"emotions": list(emotions)})
            for tid, path, emotions in rows]


def generate_corpus(output_dir: str | Path, *, seed: int = 0, tracks_per_dataset: int = 40,
                    seconds: float = 6.0, sampling_rate: int = SAMPLING_RATE,
                    datasets: Iterable[str] | None = None) -> dict[str, list[Track]]:
    """Render the synthetic datasets as 16-bit WAVs under ``output_dir/<dataset>/<track_id>.wav``.

    Also writes ``output_dir/<dataset>.jsonl`` (track_id, path relative to ``output_dir``, labels,
    split, latent emotions), which ``meralign.data.adapters.load_manifest`` reads back. Resumable:
    a WAV already written with the same settings is kept, anything else is re-rendered. Splits are
    seeded per track (70/10/20); the zero-shot dataset is all "test". Returns dataset -> Tracks.
    """
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"output_dir must be a path, got {output_dir!r} ({type(output_dir).__name__})")
    seed = _check_seed(seed)
    if isinstance(tracks_per_dataset, bool) or not isinstance(tracks_per_dataset, int) or tracks_per_dataset < 1:
        raise ValueError(f"tracks_per_dataset must be an int >= 1, got {tracks_per_dataset!r}")
    seconds = _check_seconds(seconds)
    sampling_rate = _check_sampling_rate(sampling_rate)
    names = _check_datasets(datasets)
    root = Path(output_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, list[Track]] = {}
    for name in names:
        tracks = _dataset_tracks(root, DATASET_SPECS[name], seed, tracks_per_dataset, seconds, sampling_rate)
        _write_manifest(manifest_path(root, name), tracks, root)
        corpus[name] = tracks
    return corpus


# --------------------------------------------------------------------------------------------
# Label-space check
# --------------------------------------------------------------------------------------------

def label_alignment(encode: Callable[[list[str]], np.ndarray],
                    vocabularies: Sequence[str] | None = None) -> list[dict]:
    """For every ordered pair of vocabularies, each label's nearest label (cosine) in the other.

    ``encode`` maps a list of strings to one embedding row each, e.g. a SentenceTransformer's
    ``encode``. One row per (source label, target vocabulary) where the target has the source's
    emotion: ``match`` says whether the nearest label is that emotion's. This is what
    cross-vocabulary transfer in the sentence-embedding space relies on.
    """
    names = list(vocabularies) if vocabularies is not None else list(DATASET_SPECS)
    for name in names:
        if name not in DATASET_SPECS:
            raise ValueError(f"vocabularies contains unknown dataset {name!r}; expected names from {tuple(DATASET_SPECS)}")
    words = sorted({LABEL_TABLE[e][n] for n in names for e in DATASET_SPECS[n].emotions})  # type: ignore[type-var]
    vectors = np.asarray(encode(words), dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = dict(zip(words, vectors))
    rows = []
    for source in names:
        for target in names:
            if source == target:
                continue
            target_emotions = DATASET_SPECS[target].emotions
            matrix = np.stack([embedding[LABEL_TABLE[e][target]] for e in target_emotions])
            for emotion in DATASET_SPECS[source].emotions:
                if emotion not in target_emotions:
                    continue
                sims = matrix @ embedding[LABEL_TABLE[emotion][source]]
                best = int(np.argmax(sims))
                rows.append({"source": source, "target": target, "emotion": emotion,
                             "label": LABEL_TABLE[emotion][source], "nearest": LABEL_TABLE[target_emotions[best]][target],
                             "nearest_emotion": target_emotions[best], "cosine": float(sims[best]),
                             "same_emotion_cosine": float(sims[target_emotions.index(emotion)]),
                             "match": target_emotions[best] == emotion})
    return rows
