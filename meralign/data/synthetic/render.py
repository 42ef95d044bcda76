"""Rendering one synthetic clip: note events from the clip's cues, then additive synthesis and percussion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from meralign.data.synthetic.cues import CueProfile, check_emotions, clip_cues

SAMPLING_RATE = 24000


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)):
        raise TypeError(f"seconds must be a number, got {seconds!r} ({type(seconds).__name__})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    return float(seconds)


def check_sampling_rate(sampling_rate: int) -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)):
        raise TypeError(f"sampling_rate must be an int (Hz), got {sampling_rate!r} ({type(sampling_rate).__name__})")
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate}")
    if sampling_rate < 8000:
        # Below this the melody's upper register would alias: the cues would no longer be the ones documented.
        raise ValueError(f"sampling_rate must be at least 8000 Hz, got {sampling_rate}")
    return int(sampling_rate)


# Natural minor, so that the i, iv and v chords are all minor and the mode is audible in every bar.
_SCALES = {"major": np.array([0, 2, 4, 5, 7, 9, 11]), "minor": np.array([0, 2, 3, 5, 7, 8, 10])}
_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 0, 4))


@dataclass
class _Notes:
    """Parallel arrays of note events of one voice."""

    onset: np.ndarray  # seconds
    duration: np.ndarray  # seconds, before release
    pitch: np.ndarray  # MIDI, fractional allowed
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


def _melody(
    cues: CueProfile, mode: str, tonic: int, chords: np.ndarray, seconds: float, rng: np.random.Generator
) -> tuple[_Notes, np.ndarray]:
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


def _accompaniment(
    cues: CueProfile, mode: str, tonic: int, chords: np.ndarray, seconds: float, rng: np.random.Generator
) -> tuple[_Notes, _Notes]:
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
    bass = _Notes(
        bass_onsets,
        np.full(bass_onsets.size, cues.articulation * bass_step),
        bass_octave + roots[bar_of_bass],
        np.full(bass_onsets.size, 0.7),
    )
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


def _render_voice(
    out: np.ndarray,
    notes: _Notes,
    tables: np.ndarray,
    attack: float,
    release: float,
    detune: float,
    sampling_rate: int,
) -> None:
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


def _percussion(
    out: np.ndarray, cues: CueProfile, seconds: float, sampling_rate: int, rng: np.random.Generator
) -> None:
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


def render_clip(
    emotions: Sequence[str], seed: int, seconds: float = 6.0, sampling_rate: int = SAMPLING_RATE
) -> np.ndarray:
    """Render one clip expressing ``emotions`` (main emotion first; the others share 25-45 % of the cues).

    Deterministic for ``seed``. Returns float32 mono samples, peak <= 1, at ``sampling_rate``.
    """
    names = check_emotions(emotions)
    seed = check_seed(seed)
    seconds = check_seconds(seconds)
    sampling_rate = check_sampling_rate(sampling_rate)
    rng = np.random.default_rng(seed)
    cues, mode = clip_cues(names, rng)
    tonic = int(rng.integers(0, 12))
    n = max(1, int(round(seconds * sampling_rate)))
    chords = _bar_chords(mode, max(1, math.ceil(seconds * cues.tempo / 240.0)), rng)
    melody, third = _melody(cues, mode, tonic, chords, seconds, rng)
    harmony = _harmony(melody, third, cues, rng)
    bass, pad = _accompaniment(cues, mode, tonic, chords, seconds, rng)
    detune = 0.03 * max(0.0, cues.dissonance - 0.2)  # beating only where dissonance is a cue
    release = 0.02 + 0.3 * cues.articulation**2
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
    rms = math.sqrt(float(np.mean(out**2)))
    if rms > 0:
        out = out * (10.0 ** (loudness_db / 20.0) / rms)
    fade = min(out.size // 2, int(0.01 * sampling_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[out.size - fade :] *= ramp[::-1]
    return np.clip(np.tanh(out), -1.0, 1.0).astype(np.float32)
