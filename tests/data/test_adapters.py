"""Dataset adapters on small fixtures written in each dataset's native layout.

Expected labels are worked out by hand in the comments beside each fixture.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import EMOTIFY_HEADER, emotify_line, write_emotify  # noqa: E402

from meralign.data.adapters import ADAPTERS, load_dataset_tracks  # noqa: E402
from meralign.data.adapters.cal500 import cal500_ground_truth, load_cal500, normalize_cal500_tag  # noqa: E402
from meralign.data.adapters.emotify import emotify_ground_truth, load_emotify  # noqa: E402
from meralign.data.adapters.hf import load_hf_dataset  # noqa: E402
from meralign.data.adapters.manifest import load_manifest  # noqa: E402
from meralign.data.adapters.mtg_jamendo import load_mtg_jamendo  # noqa: E402
from meralign.data.adapters.splits import split_by_track, split_counts  # noqa: E402
from meralign.data.tracks import SPLITS, Track  # noqa: E402
from meralign.vocabularies import CAL500, EMOTIFY  # noqa: E402


def assert_no_leak(tracks: list[Track]) -> None:
    """Every track id occurs once, hence in exactly one split, and every split is a valid name."""
    ids = [t.track_id for t in tracks]
    assert len(ids) == len(set(ids))
    per_split = {s: {t.track_id for t in tracks if t.split == s} for s in SPLITS}
    assert sum(len(v) for v in per_split.values()) == len(tracks)
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not per_split[a] & per_split[b]


def split_map(tracks: list[Track]) -> dict[str, str]:
    return {t.track_id: t.split for t in tracks}


# ---------------------------------------------------------------------------------------------
# split_by_track
# ---------------------------------------------------------------------------------------------

IDS12 = [f"t{i:02d}" for i in range(12)]


def test_split_counts_are_exact_by_rounding():
    assert split_counts(10) == (7, 1, 2)
    assert split_counts(12) == (8, 2, 2)  # cumulative 8.4 -> 8, 9.6 -> 10
    assert split_counts(3) == (2, 0, 1)  # cumulative 2.1 -> 2, 2.4 -> 2
    assert split_counts(0) == (0, 0, 0)
    assert split_counts(7, (0.5, 0.25, 0.25)) == (4, 1, 2)  # 3.5 -> 4 (half up), 5.25 -> 5
    assert split_counts(5, (0.5, 0.3, 0.2)) == (3, 1, 1)  # 2.5 -> 3: half up, not to even
    assert split_counts(5, (1.0, 0.0, 0.0)) == (5, 0, 0)


def test_split_by_track_golden_and_order_independent():
    # Golden values lock the assignment: a silent change would reshuffle published splits.
    expected = {
        "t00": "train",
        "t01": "train",
        "t02": "train",
        "t03": "train",
        "t04": "train",
        "t05": "train",
        "t06": "train",
        "t07": "train",
        "t08": "test",
        "t09": "validation",
        "t10": "test",
        "t11": "validation",
    }
    assert split_by_track(IDS12, seed=0) == expected
    shuffled = IDS12[:]
    random.Random(3).shuffle(shuffled)
    assert split_by_track(shuffled + IDS12[:4], seed=0) == expected  # order and duplicates do not matter
    assert split_by_track(tuple(IDS12), 0, (0.7, 0.1, 0.2)) == expected


def test_split_by_track_changes_with_seed_and_keeps_counts():
    ids = [f"song{i}" for i in range(40)]
    a, b = split_by_track(ids, seed=0), split_by_track(ids, seed=1)
    assert a != b
    for assignment in (a, b):
        counts = tuple(sum(1 for s in assignment.values() if s == name) for name in SPLITS)
        assert counts == (28, 4, 8)


def test_split_by_track_bad_input():
    with pytest.raises(ValueError, match="fractions must sum to 1"):
        split_by_track(IDS12, 0, (0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="fractions must be three"):
        split_by_track(IDS12, 0, (0.5, 0.5))
    with pytest.raises(ValueError, match="fractions must be finite and >= 0"):
        split_by_track(IDS12, 0, (1.2, -0.2, 0.0))
    with pytest.raises(TypeError, match="seed must be an int"):
        split_by_track(IDS12, seed="0")
    with pytest.raises(TypeError, match="track_ids must contain non-empty strings"):
        split_by_track(["a", 3], 0)
    with pytest.raises(TypeError, match="track_ids must be an iterable"):
        split_by_track("abc", 0)


# ---------------------------------------------------------------------------------------------
# MTG-Jamendo
# ---------------------------------------------------------------------------------------------

MTG_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"


def mtg_row(number: int, tags: list[str], artist: int = 1, album: int = 1) -> str:
    path = f"{number % 100:02d}/{number}.mp3"
    fields = [f"track_{number:07d}", f"artist_{artist:06d}", f"album_{album:06d}", path, "120.5"]
    return "\t".join(fields + [f"mood/theme---{t}" for t in tags])


def write_tsv(path: Path, rows: list[str], header: str = MTG_HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


MTG_SPLIT0 = {
    "train": [(948, ["happy", "energetic"]), (1001, ["sad"])],
    "validation": [(917542, ["relaxing"])],
    "test": [(1026811, ["slow", "sad"])],
}


@pytest.fixture
def mtg_root(tmp_path: Path) -> Path:
    """A ``data`` folder as the official repository lays it out: the full TSV plus splits/split-0."""
    root = tmp_path / "data"
    everything = [mtg_row(n, tags) for rows in MTG_SPLIT0.values() for n, tags in rows]
    extra = [mtg_row(2000 + i, ["calm", "film"] if i % 2 else ["dark"]) for i in range(6)]
    write_tsv(root / "autotagging_moodtheme.tsv", everything + extra)
    for split, rows in MTG_SPLIT0.items():
        write_tsv(root / "splits" / "split-0" / f"autotagging_moodtheme-{split}.tsv", [mtg_row(n, t) for n, t in rows])
    return root


def test_mtg_official_split(mtg_root: Path, tmp_path: Path):
    audio = tmp_path / "audio"
    audio.mkdir()
    tracks = load_mtg_jamendo(mtg_root, split=0, audio_dir=audio)
    got = [(t.track_id, t.labels, t.split, t.audio, t.dataset) for t in tracks]
    assert got == [
        ("track_0000948", ("happy", "energetic"), "train", str(audio / "48/948.mp3"), "mtg-jamendo"),
        ("track_0001001", ("sad",), "train", str(audio / "01/1001.mp3"), "mtg-jamendo"),
        ("track_0917542", ("relaxing",), "validation", str(audio / "42/917542.mp3"), "mtg-jamendo"),
        ("track_1026811", ("slow", "sad"), "test", str(audio / "11/1026811.mp3"), "mtg-jamendo"),
    ]
    assert tracks[0].extra == {
        "artist_id": "artist_000001",
        "album_id": "album_000001",
        "duration": 120.5,
        "path": "48/948.mp3",
    }
    assert_no_leak(tracks)
    # The registry runs the same adapter.
    assert load_dataset_tracks("mtg-jamendo", root=mtg_root, split=0, audio_dir=audio) == tracks


def test_mtg_low_quality_paths_and_default_audio_root(mtg_root: Path):
    tracks = load_mtg_jamendo(mtg_root, split=0, low_quality=True)
    assert tracks[0].audio == str(mtg_root / "48/948.low.mp3")
    assert tracks[3].audio == str(mtg_root / "11/1026811.low.mp3")


def test_mtg_check_audio(mtg_root: Path, tmp_path: Path):
    audio = tmp_path / "audio"
    for n in (948, 1001, 917542):
        (audio / f"{n % 100:02d}").mkdir(parents=True, exist_ok=True)
        (audio / f"{n % 100:02d}" / f"{n}.low.mp3").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"track_1026811.*11/1026811\.low\.mp3"):
        load_mtg_jamendo(mtg_root, audio_dir=audio, low_quality=True, check_audio=True)
    (audio / "11").mkdir()
    (audio / "11" / "1026811.low.mp3").write_bytes(b"x")
    assert len(load_mtg_jamendo(mtg_root, audio_dir=audio, low_quality=True, check_audio=True)) == 4


def test_mtg_seeded_split_of_full_tsv(mtg_root: Path):
    a = load_mtg_jamendo(mtg_root, split=None, seed=0)
    assert len(a) == 10
    assert [sum(t.split == s for t in a) for s in SPLITS] == [7, 1, 2]
    assert_no_leak(a)
    assert {t.track_id: t.labels for t in a}["track_0002001"] == ("calm", "film")
    assert split_map(load_mtg_jamendo(mtg_root, split=None, seed=0)) == split_map(a)
    assert split_map(load_mtg_jamendo(mtg_root, split=None, seed=1)) != split_map(a)


def test_mtg_label_outside_vocabulary(mtg_root: Path):
    write_tsv(mtg_root / "splits/split-0/autotagging_moodtheme-test.tsv", [mtg_row(1026811, ["slow", "grumpy"])])
    with pytest.raises(ValueError, match=r"track_1026811.*'grumpy'.*not in vocabulary 'mtg-jamendo'"):
        load_mtg_jamendo(mtg_root, split=0)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("track_0000005\tartist_000001\talbum_000001\t05/5.mp3", r"line 3: malformed row, expected at least 6"),
        ("track_0000005\tartist_000001\talbum_000001\t05/5.mp3\tlong\tmood/theme---sad", r"line 3.*DURATION.*'long'"),
        ("5\tartist_000001\talbum_000001\t05/5.mp3\t10.0\tmood/theme---sad", r"line 3.*TRACK_ID"),
        ("track_0000005\tartist_000001\talbum_000001\t05/5.mp3\t10.0\tgenre---rock", r"line 3.*'genre---rock'"),
    ],
)
def test_mtg_malformed_rows(mtg_root: Path, bad_row: str, message: str):
    write_tsv(
        mtg_root / "splits/split-0/autotagging_moodtheme-validation.tsv", [mtg_row(917542, ["relaxing"]), bad_row]
    )
    with pytest.raises(ValueError, match=message):
        load_mtg_jamendo(mtg_root, split=0)


def test_mtg_structural_errors(mtg_root: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="root must be an existing folder"):
        load_mtg_jamendo(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split=3: no official split folder"):
        load_mtg_jamendo(mtg_root, split=3)
    with pytest.raises(TypeError, match="split must be an int"):
        load_mtg_jamendo(mtg_root, split="0")
    write_tsv(mtg_root / "splits/split-0/autotagging_moodtheme-test.tsv", [mtg_row(948, ["happy"])])
    with pytest.raises(ValueError, match=r"track_0000948.*also in the 'train' split file"):
        load_mtg_jamendo(mtg_root, split=0)
    (mtg_root / "splits/split-0/autotagging_moodtheme-test.tsv").unlink()
    with pytest.raises(ValueError, match=r"split file for 'test'.*autotagging_moodtheme-test\.tsv"):
        load_mtg_jamendo(mtg_root, split=0)
    write_tsv(mtg_root / "autotagging_moodtheme.tsv", [mtg_row(1, ["sad"])], header="ID\tPATH\tTAGS")
    with pytest.raises(ValueError, match="header must start with"):
        load_mtg_jamendo(mtg_root, split=None)
    write_tsv(mtg_root / "autotagging_moodtheme.tsv", [mtg_row(1, ["sad"]), mtg_row(1, ["happy"])])
    with pytest.raises(ValueError, match="'track_0000001' appears more than once"):
        load_mtg_jamendo(mtg_root, split=None)


# ---------------------------------------------------------------------------------------------
# CAL500
# ---------------------------------------------------------------------------------------------

# The 18 raw CAL500 emotion tags, in the order of meralign.vocabularies.CAL500 (sic: Agressive).
CAL500_RAW = [
    "Emotion-Angry_/_Agressive",
    "Emotion-Arousing_/_Awakening",
    "Emotion-Bizarre_/_Weird",
    "Emotion-Calming_/_Soothing",
    "Emotion-Carefree_/_Lighthearted",
    "Emotion-Cheerful_/_Festive",
    "Emotion-Emotional_/_Passionate",
    "Emotion-Exciting_/_Thrilling",
    "Emotion-Happy",
    "Emotion-Laid-back_/_Mellow",
    "Emotion-Light_/_Playful",
    "Emotion-Loving_/_Romantic",
    "Emotion-Pleasant_/_Comfortable",
    "Emotion-Positive_/_Optimistic",
    "Emotion-Powerful_/_Strong",
    "Emotion-Sad",
    "Emotion-Tender_/_Soft",
    "Emotion-Touching_/_Loving",
]


def write_cal500_song(folder: Path, song: str, n_annotators: int, overrides: dict[str, list]) -> None:
    """One song file: every emotion rated 1 unless overridden (label -> one rating per annotator).

    Extra columns that must be ignored: negated tags rated 5 (in both spellings) and a genre tag
    rated 5.
    """
    header = ["Genre-Rock", *CAL500_RAW[:9], "NOT-Emotion-Sad", *CAL500_RAW[9:], "Emotion-Not-Happy"]
    rows = []
    for a in range(n_annotators):
        row = []
        for raw in header:
            if raw in ("Genre-Rock", "NOT-Emotion-Sad", "Emotion-Not-Happy"):
                row.append("5")
                continue
            label = normalize_cal500_tag(raw)
            row.append(str(overrides[label][a]) if label in overrides else "1")
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{song}.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


CAL500_SONGS = {
    # No mean exceeds 4 ("sad" is exactly 4.0: strict >), so the single argmax: sad.
    "artist_a-song_one": (3, {"sad": [4, 4, 4], "happy": [5, 3, 3], "tender, soft": [3, 3, 3]}),
    # happy 4.75 > 4, so the top 5 by mean: happy 4.75, cheerful 4.5, then carefree 4.0 and positive 4.0
    # (tie: vocabulary order), then exciting 3.5 beats light 3.5 (vocabulary order).
    "artist_b-song_two": (
        4,
        {
            "happy": [5, 5, 4, 5],
            "cheerful, festive": [5, 4, 4, 5],
            "carefree, lighthearted": [4, 4, 4, 4],
            "positive, optimistic": [4, 4, 4, 4],
            "light, playful": [4, 3, 4, 3],
            "exciting, thrilling": [3, 4, 3, 4],
        },
    ),
    # A blank rating is left out of the mean: laid-back (5, _, 4) = 4.5 > 4 (3.0 if blank counted as 0).
    "artist_c-song_three": (
        3,
        {
            "laid-back, mellow": [5, "", 4],
            "calming, soothing": [4, 4, 3],
            "tender, soft": [3, 3, 3],
            "pleasant, comfortable": [2, 3, 2],
            "sad": [2, 2, 2],
        },
    ),
}
CAL500_EXPECTED = {
    "artist_a-song_one": ("sad",),
    "artist_b-song_two": (
        "happy",
        "cheerful, festive",
        "carefree, lighthearted",
        "positive, optimistic",
        "exciting, thrilling",
    ),
    "artist_c-song_three": ("laid-back, mellow", "calming, soothing", "tender, soft", "pleasant, comfortable", "sad"),
}


@pytest.fixture
def cal500_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "annotations"
    for song, (n, overrides) in CAL500_SONGS.items():
        write_cal500_song(folder, song, n, overrides)
    return folder


def test_normalize_cal500_tag_maps_all_raw_tags():
    assert [normalize_cal500_tag(raw) for raw in CAL500_RAW] == list(CAL500.labels)
    assert normalize_cal500_tag(" Emotion-Angry / Agressive ") == "angry, aggressive"
    assert normalize_cal500_tag("Emotion-Laid-back_/_Mellow") == "laid-back, mellow"


def test_cal500_ground_truth_rule():
    assert cal500_ground_truth({"sad": 4.0, "happy": 3.9}) == ("sad",)
    assert cal500_ground_truth({"sad": 4.0, "happy": 4.0}) == ("happy",)  # tie: vocabulary order
    assert cal500_ground_truth({"sad": 4.01, "happy": 1.0}) == ("sad", "happy")  # top-5 of what exists


def test_cal500_tracks(cal500_dir: Path, tmp_path: Path):
    tracks = load_cal500(cal500_dir, tmp_path / "wav", audio_ext=".wav")
    assert {t.track_id: t.labels for t in tracks} == CAL500_EXPECTED
    assert [t.track_id for t in tracks] == sorted(CAL500_EXPECTED)
    assert tracks[0].audio == str(tmp_path / "wav" / "artist_a-song_one.wav")
    assert {t.dataset for t in tracks} == {"cal500"}
    assert tracks[1].extra["n_annotators"] == 4
    assert tracks[1].extra["mean_ratings"]["happy"] == pytest.approx(4.75)
    assert tracks[2].extra["mean_ratings"]["laid-back, mellow"] == pytest.approx(4.5)
    # 3 songs at 0.7/0.1/0.2 -> 2/0/1 (see split_counts), by song.
    assert sorted(t.split for t in tracks) == ["test", "train", "train"]
    assert split_map(tracks) == split_by_track(list(CAL500_EXPECTED), 0)
    assert_no_leak(tracks)
    assert (
        load_dataset_tracks("cal500", annotations_dir=cal500_dir, audio_dir=tmp_path / "wav", audio_ext=".wav")
        == tracks
    )


def test_cal500_splits_by_song_seeded(tmp_path: Path):
    folder = tmp_path / "many"
    for i in range(12):
        write_cal500_song(folder, f"song_{i:02d}", 2, {"sad": [3, 3]})
    a = load_cal500(folder, tmp_path, seed=0)
    assert [sum(t.split == s for t in a) for s in SPLITS] == [8, 2, 2]
    assert_no_leak(a)
    assert split_map(load_cal500(folder, tmp_path, seed=0)) == split_map(a)
    assert split_map(load_cal500(folder, tmp_path, seed=5)) != split_map(a)
    b = load_cal500(folder, tmp_path, seed=0, fractions=(0.5, 0.25, 0.25))
    assert [sum(t.split == s for t in b) for s in SPLITS] == [6, 3, 3]


def test_cal500_errors(cal500_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="annotations_dir must be an existing folder"):
        load_cal500(tmp_path / "missing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no '\*\.csv' annotation files"):
        load_cal500(tmp_path / "empty", tmp_path)
    bad = cal500_dir / "artist_d-bad.csv"
    bad.write_text("Emotion-Happy,Emotion-Grumpy_/_Cross\n3,4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"artist_d-bad\.csv.*'Emotion-Grumpy_/_Cross'.*'grumpy, cross'"):
        load_cal500(cal500_dir, tmp_path)
    bad.write_text("Emotion-Happy,Emotion-Sad\n3,lots\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"artist_d-bad\.csv row 2: rating for 'Emotion-Sad' must be a number"):
        load_cal500(cal500_dir, tmp_path)
    bad.write_text("Emotion-Happy,Emotion-Sad\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no annotator rows"):
        load_cal500(cal500_dir, tmp_path)
    bad.write_text("Genre-Rock,Usage-Driving\n3,4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no 'Emotion-\*' column"):
        load_cal500(cal500_dir, tmp_path)
    bad.write_text("Emotion-Sad,Emotion-sad\n3,4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="two columns map to the label 'sad'"):
        load_cal500(cal500_dir, tmp_path)


# ---------------------------------------------------------------------------------------------
# Emotify
# ---------------------------------------------------------------------------------------------

EMOTIFY_EXPECTED = {
    # calmness 3, tenderness 2, nostalgia 1 = sadness 1 -> nostalgia first in vocabulary order.
    "1": ("calmness", "tenderness", "nostalgia"),
    "2": ("solemnity", "sadness"),  # only two labels got votes
    # power 2, joyful_activation 1 = tension 1 -> joyful_activation first in vocabulary order.
    "150": ("power", "joyful_activation", "tension"),
    "250": ("amazement",),
    # joyful 3, power 2, amazement 1 = tenderness 1 -> amazement first in vocabulary order.
    "399": ("joyful_activation", "power", "amazement"),
}


def test_emotify_ground_truth_rule():
    votes = {label: 0 for label in EMOTIFY.labels} | {"sadness": 2, "amazement": 2, "power": 5, "tension": 1}
    assert emotify_ground_truth(votes) == ("power", "amazement", "sadness")
    with pytest.raises(ValueError, match="no label with a vote"):
        emotify_ground_truth({label: 0 for label in EMOTIFY.labels})


def test_emotify_tracks(tmp_path: Path):
    data = write_emotify(tmp_path / "data.csv")
    audio = tmp_path / "audio"
    tracks = load_emotify(data, audio)
    assert {t.track_id: t.labels for t in tracks} == EMOTIFY_EXPECTED
    assert [t.track_id for t in tracks] == ["1", "2", "150", "250", "399"]
    assert {t.track_id: t.audio for t in tracks} == {
        "1": str(audio / "classical" / "1.mp3"),
        "2": str(audio / "classical" / "2.mp3"),
        "150": str(audio / "rock" / "50.mp3"),
        "250": str(audio / "electronic" / "50.mp3"),
        "399": str(audio / "pop" / "99.mp3"),
    }
    by_id = {t.track_id: t for t in tracks}
    assert by_id["1"].extra["n_listeners"] == 3
    assert by_id["399"].extra["votes"]["joyful_activation"] == 3
    assert {t.dataset for t in tracks} == {"emotify"}
    # 5 tracks at 0.7/0.1/0.2: cumulative 3.5 -> 4, 4.0 -> 4, so 4/0/1.
    assert sorted(t.split for t in tracks) == ["test", "train", "train", "train", "train"]
    assert_no_leak(tracks)
    assert load_dataset_tracks("emotify", data_csv=data, audio_dir=audio) == tracks


def test_emotify_splits_seeded(tmp_path: Path):
    answers = [(n, ["calmness"]) for n in range(1, 21)]
    data = write_emotify(tmp_path / "data.csv", answers, {n: "classical" for n in range(1, 21)})
    a = load_emotify(data, tmp_path)
    assert [sum(t.split == s for t in a) for s in SPLITS] == [14, 2, 4]
    assert_no_leak(a)
    assert split_map(load_emotify(data, tmp_path, seed=0)) == split_map(a)
    assert split_map(load_emotify(data, tmp_path, seed=2)) != split_map(a)


def test_emotify_custom_genres(tmp_path: Path):
    data = write_emotify(tmp_path / "data.csv", [(3, ["power"]), (4, ["tension"])], {3: "x", 4: "x"})
    tracks = load_emotify(data, tmp_path, genres=[("a", 1, 2), ("b", 3, 4)], check_genre=False, audio_ext=".flac")
    assert [t.audio for t in tracks] == [str(tmp_path / "b" / "1.flac"), str(tmp_path / "b" / "2.flac")]
    with pytest.raises(ValueError, match="genres must not overlap"):
        load_emotify(data, tmp_path, genres=[("a", 1, 3), ("b", 3, 4)])


def test_emotify_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="data_csv must be an existing file"):
        load_emotify(tmp_path / "data.csv", tmp_path)
    data = write_emotify(tmp_path / "data.csv", [(150, ["power"])], {150: "pop"})
    with pytest.raises(ValueError, match=r"track '150' has genre 'pop' in the csv but 'rock'"):
        load_emotify(data, tmp_path)
    data = write_emotify(tmp_path / "data.csv", [(401, ["power"])], {401: "pop"})
    with pytest.raises(ValueError, match="track id 401 is in no genre range"):
        load_emotify(data, tmp_path)
    line = emotify_line(1, "classical", ["power"]).replace("1, classical, 0", "1, classical, 2")
    data.write_text(EMOTIFY_HEADER + "\n" + line, encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: vote for 'amazement' must be 0 or 1, got '2'"):
        load_emotify(data, tmp_path)
    data.write_text(EMOTIFY_HEADER + "\n1, classical, 0, 1\n")
    with pytest.raises(ValueError, match="line 2: malformed row"):
        load_emotify(data, tmp_path)
    data.write_text(EMOTIFY_HEADER.replace("tension, ", "") + "\n")
    with pytest.raises(ValueError, match=r"header lacks the columns \['tension'\]"):
        load_emotify(data, tmp_path)
    data = write_emotify(tmp_path / "data.csv", [(7, [])], {7: "classical"})
    with pytest.raises(ValueError, match="track '7' received no vote"):
        load_emotify(data, tmp_path)


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------

VOCAB = ["joyful", "melancholic", "tense", "serene"]


def test_manifest_csv(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere" / "abs.ogg"
    manifest = tmp_path / "mine" / "my_set.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        f"path , labels ,note\nclips/a.wav,joyful; serene,x\n{elsewhere},tense,y\nclips/b.flac,melancholic,\n",
        encoding="utf-8",
    )
    tracks = load_manifest(manifest, VOCAB)
    got = [(t.track_id, t.audio, t.labels, t.dataset) for t in tracks]
    assert got == [
        ("a", str(manifest.parent / "clips/a.wav"), ("joyful", "serene"), "my_set"),
        ("abs", str(elsewhere), ("tense",), "my_set"),
        ("b", str(manifest.parent / "clips/b.flac"), ("melancholic",), "my_set"),
    ]
    assert tracks[0].extra == {"note": "x"}
    assert split_map(tracks) == split_by_track(["a", "abs", "b"], 0)
    assert_no_leak(tracks)
    assert load_dataset_tracks("manifest", path=manifest, vocabulary=VOCAB) == tracks


def test_manifest_csv_pipe_separator_ids_splits_and_builtin_vocabulary(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "track_id,path,labels,split\nx1,a.mp3,power|tension,train\nx2,b.mp3,sadness,test\n", encoding="utf-8"
    )
    tracks = load_manifest(manifest, "emotify", separator="|", name="game")
    assert [(t.track_id, t.labels, t.split, t.dataset) for t in tracks] == [
        ("x1", ("power", "tension"), "train", "game"),
        ("x2", ("sadness",), "test", "game"),
    ]


def test_manifest_jsonl_seeded(tmp_path: Path):
    manifest = tmp_path / "m.jsonl"
    records = [{"path": f"s{i}.wav", "labels": [VOCAB[i % 4]], "mood_score": i} for i in range(20)]
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    a = load_manifest(manifest, VOCAB)
    assert [t.labels for t in a[:5]] == [("joyful",), ("melancholic",), ("tense",), ("serene",), ("joyful",)]
    assert a[3].extra == {"mood_score": 3}
    assert [sum(t.split == s for t in a) for s in SPLITS] == [14, 2, 4]
    assert_no_leak(a)
    assert split_map(load_manifest(manifest, VOCAB, seed=0)) == split_map(a)
    assert split_map(load_manifest(manifest, VOCAB, seed=1)) != split_map(a)


def test_manifest_errors(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,labels\na.wav,joyful;grumpy\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"track 'a' has label 'grumpy', which is not in vocabulary"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("path,labels\na.wav,joyful\nb.wav,\n", encoding="utf-8")
    with pytest.raises(ValueError, match="track 'b' has no labels"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("path,labels\na.wav,joyful\nsub/a.ogg,tense\n", encoding="utf-8")
    with pytest.raises(ValueError, match="track id 'a' appears more than once"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("path,labels,split\na.wav,joyful,train\nb.wav,tense,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"track 'b' has none"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("path,labels,split\na.wav,joyful,val\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split of track 'a' must be one of"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("file,labels\na.wav,joyful\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header must have the columns 'path' and 'labels'"):
        load_manifest(manifest, VOCAB)
    manifest.write_text("path,labels\na.wav,joyful,extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: malformed row"):
        load_manifest(manifest, VOCAB)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "a.wav", "labels": "joyful"}\n', encoding="utf-8")
    with pytest.raises(TypeError, match="'labels' of track 'a' must be a list"):
        load_manifest(jsonl, VOCAB)
    jsonl.write_text('{"path": "a.wav", "labels": ["joyful"]}\n{"path": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_manifest(jsonl, VOCAB)
    with pytest.raises(ValueError, match="path must be an existing file"):
        load_manifest(tmp_path / "none.csv", VOCAB)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ValueError, match=r"path must be a \.csv or \.jsonl manifest"):
        load_manifest(tmp_path / "m.txt", VOCAB)
    with pytest.raises(ValueError, match="separator must be"):
        load_manifest(jsonl, VOCAB, separator=",")
    manifest.write_text("path,labels\na.wav,joyful\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"audio of track 'a' not found"):
        load_manifest(manifest, VOCAB, check_audio=True)


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------

datasets = pytest.importorskip("datasets")


def test_hf_string_labels_bytes_and_paths():
    ds = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": b"RIFF0", "path": "a.wav"},
                {"bytes": None, "path": "/data/b.ogg"},
                {"bytes": b"RIFF2", "path": None},
            ],
            "labels": [["joyful", "tense"], ["serene"], ["melancholic"]],
            "track_id": ["a", "b", "c"],
            "split": ["train", "test", "validation"],
            "other": [1, 2, 3],
        }
    )
    tracks = load_hf_dataset(ds, vocabulary=VOCAB, name="hf-set")
    assert [(t.track_id, t.audio, t.labels, t.split, t.dataset) for t in tracks] == [
        ("a", b"RIFF0", ("joyful", "tense"), "train", "hf-set"),
        ("b", "/data/b.ogg", ("serene",), "test", "hf-set"),
        ("c", b"RIFF2", ("melancholic",), "validation", "hf-set"),
    ]
    assert_no_leak(tracks)
    # An Audio() (decoding) column is read undecoded too, without torchcodec.
    decoded = ds.cast_column("audio", datasets.Audio())
    assert [t.audio for t in load_hf_dataset(decoded, vocabulary=VOCAB)] == [b"RIFF0", "/data/b.ogg", b"RIFF2"]
    assert load_dataset_tracks("hf", ds=ds, vocabulary=VOCAB, name="hf-set") == tracks


def test_hf_classlabel_ids_and_seeded_split():
    names = ["calm", "happy", "sad"]
    features = datasets.Features(
        {"audio": datasets.Value("string"), "labels": datasets.List(datasets.ClassLabel(names=names))}
    )
    ds = datasets.Dataset.from_dict(
        {"audio": [f"clip{i}.wav" for i in range(20)], "labels": [[i % 3, (i + 1) % 3] for i in range(20)]},
        features=features,
    )
    a = load_hf_dataset(ds)
    assert a[0].labels == ("calm", "happy") and a[2].labels == ("sad", "calm")
    assert a[0].track_id == "0" and a[0].audio == "clip0.wav" and a[0].dataset == "hf"
    assert [sum(t.split == s for t in a) for s in SPLITS] == [14, 2, 4]
    assert_no_leak(a)
    assert split_map(load_hf_dataset(ds, seed=0)) == split_map(a)
    assert split_map(load_hf_dataset(ds, seed=1)) != split_map(a)
    # A vocabulary wider than the ClassLabel names is fine; a narrower one rejects labels.
    assert len(load_hf_dataset(ds, vocabulary=names + ["tense"])) == 20
    with pytest.raises(ValueError, match=r"track '1' has label 'sad', which is not in vocabulary"):
        load_hf_dataset(ds, vocabulary=["calm", "happy"])


def test_hf_single_classlabel_and_datasetdict():
    features = datasets.Features(
        {"audio": datasets.Value("string"), "labels": datasets.ClassLabel(names=["calm", "happy"])}
    )
    train = datasets.Dataset.from_dict({"audio": ["a.wav", "b.wav"], "labels": [0, 1]}, features=features)
    test = datasets.Dataset.from_dict({"audio": ["c.wav"], "labels": [1]}, features=features)
    tracks = load_hf_dataset(datasets.DatasetDict({"train": train, "test": test}))
    assert [(t.track_id, t.labels, t.split) for t in tracks] == [
        ("train-0", ("calm",), "train"),
        ("train-1", ("happy",), "train"),
        ("test-0", ("happy",), "test"),
    ]
    with pytest.raises(ValueError, match=r"DatasetDict keys must be split names"):
        load_hf_dataset(datasets.DatasetDict({"dev": test}))


def test_hf_errors():
    ds = datasets.Dataset.from_dict({"audio": ["a.wav"], "labels": [["joyful"]]})
    with pytest.raises(TypeError, match="vocabulary is required"):
        load_hf_dataset(ds)
    with pytest.raises(ValueError, match="labels_column 'tags' is not a column"):
        load_hf_dataset(ds, vocabulary=VOCAB, labels_column="tags")
    with pytest.raises(TypeError, match="ds must be a datasets.Dataset"):
        load_hf_dataset([{"audio": "a.wav"}], vocabulary=VOCAB)
    bad_split = datasets.Dataset.from_dict({"audio": ["a.wav"], "labels": [["joyful"]], "split": ["dev"]})
    with pytest.raises(ValueError, match=r"'split' of track '0' must be one of"):
        load_hf_dataset(bad_split, vocabulary=VOCAB)
    ints = datasets.Dataset.from_dict({"audio": ["a.wav"], "labels": [[3]]})
    with pytest.raises(TypeError, match="must hold label strings or ClassLabel ids"):
        load_hf_dataset(ints, vocabulary=VOCAB)


def test_registry_lists_all_adapters():
    assert set(ADAPTERS) == {"mtg-jamendo", "cal500", "emotify", "manifest", "hf"}
    with pytest.raises(ValueError, match="kind must be one of"):
        load_dataset_tracks("gtzan")
