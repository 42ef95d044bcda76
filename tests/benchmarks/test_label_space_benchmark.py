"""The label-space benchmark's machinery (benchmarks/label_space.py): scorers, the transform, the word-list checks.

Offline and fast: small fake embeddings stand in for MiniLM everywhere (no model is loaded).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import label_space as ls  # noqa: E402
import label_space_words as words  # noqa: E402

RUSSELL = json.loads((BENCH / "norms" / "russell_1980_circumplex.json").read_text())["angles_degrees"]


def fake_encoder(dim: int = 16, log: list | None = None):
    """A deterministic random vector per text (seeded by its hash), like a model that knows no meaning."""
    cache = {}

    def vector(text):
        if text not in cache:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
            cache[text] = np.random.default_rng(seed).normal(size=dim)
        return cache[text]

    class Encoder:  # the sentence-transformers `encode` the shipped label-space code calls
        def encode(self, texts, **kwargs):
            if log is not None:
                log.extend(texts)
            rows = np.stack([vector(t) for t in texts])
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return Encoder()


def circle_vectors(angles_degrees, dim=8):
    a = np.radians(np.asarray(angles_degrees, dtype=float))
    v = np.zeros((len(a), dim))
    v[:, 0], v[:, 1] = np.cos(a), np.sin(a)
    return v


# ------------------------------------------------------------------------------------- scorers
def test_spearman_is_one_for_vectors_built_on_the_circumplex():
    human = ls.circumplex_similarity(list(RUSSELL.values()))
    assert ls.pair_spearman(circle_vectors(list(RUSSELL.values())), human) == pytest.approx(1.0)
    # the same vectors against shuffled angles no longer agree
    shuffled = np.random.default_rng(0).permutation(list(RUSSELL.values()))
    assert ls.pair_spearman(circle_vectors(shuffled), human) < 0.5


def test_spearman_is_near_zero_for_random_vectors():
    human = ls.circumplex_similarity(list(RUSSELL.values()))
    rng = np.random.default_rng(1)
    scores = [ls.pair_spearman(rng.normal(size=(28, 64)), human) for _ in range(30)]
    assert abs(np.mean(scores)) < 0.05 and max(map(abs, scores)) < 0.3


def test_bootstrap_resamples_words_and_drops_self_pairs():
    human = ls.circumplex_similarity(list(RUSSELL.values()))
    v = circle_vectors(list(RUSSELL.values()))
    # a resample with repeated words: pairs of a word with its own copy would have cosine 1 and similarity 1
    assert ls.pair_spearman(v, human, index=[0, 0, 0, 5, 9, 14, 20]) == pytest.approx(1.0)
    noisy = v + np.random.default_rng(2).normal(scale=0.5, size=v.shape)
    lo, hi = ls.bootstrap_interval(noisy, human, n=200, seed=3)
    assert lo < ls.pair_spearman(noisy, human) < hi
    assert (lo, hi) == ls.bootstrap_interval(noisy, human, n=200, seed=3)  # fixed seed, same interval


def test_warriner_and_valence_similarities():
    sim = ls.va_similarity([9.0, 1.0, 5.0], [5.0, 5.0, 9.0])  # pleasant, unpleasant, aroused
    np.testing.assert_allclose(sim, [[1, -1, 0], [-1, 1, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(ls.valence_similarity([1.0, 3.0, 2.0]), [[0, -2, -1], [-2, 0, -1], [-1, -1, 0]])


# ------------------------------------------------------------------------------------- the representation
def test_representations_use_the_shipped_label_space_code():
    """Rows of the table are computed by the code a model runs: the paper's row is the bare sentence embedding,
    the axes rows come from meralign.alignment.label_space's builder, descriptions are averaged in."""
    from meralign.alignment.label_space import label_vectors

    enc = fake_encoder()
    paper = ls.Representation(None, "{}").vectors(["joyful_activation"], enc)
    np.testing.assert_allclose(paper[0], enc.encode(["joyful_activation"])[0], atol=1e-6)  # not underscore-split
    rep = ls.with_axes(enc, ["I feel {}."], (["good"], ["bad"]), (["wired"], ["idle"]), 3.0, ["warm", "bleak"], 0.0)
    assert rep.space["factors"] == [3.0, 3.0, 0.0] and rep.space["names"] == ["valence", "arousal", "common"]
    np.testing.assert_allclose(rep.vectors(["zestful"], enc), label_vectors(["zestful"], rep.space, enc), atol=1e-6)
    with_desc = ls.Representation(rep.space, descriptions={"sad": "full of sorrow"}).vectors(["sad"], enc)[0]
    plain = ls.Representation({**rep.space, "templates": ["{}"]}).vectors(["full of sorrow"], enc)[0]
    np.testing.assert_allclose(with_desc, ls.normalize(rep.vectors(["sad"], enc)[0] + plain), atol=1e-6)


def test_the_dev_choice_is_compared_with_the_shipped_recipe():
    from meralign.alignment.label_space import AFFECT_RECIPE

    chosen = {
        "templates": AFFECT_RECIPE["templates"],
        "valence": "evaluative",
        "arousal": "activation",
        "w": 4.0,
        "common": 0.0,
        "common_words": AFFECT_RECIPE["common_words"],
    }
    assert ls.ships_the_dev_choice(chosen)
    assert not ls.ships_the_dev_choice({**chosen, "w": 2.0})


# ------------------------------------------------------------------------------------- word lists stay disjoint
@pytest.mark.parametrize(
    "a, b",
    [
        ("happy", "happiness"),
        ("sad", "sadness"),
        ("calm", "calmness"),
        ("angry", "anger"),
        ("tense", "tension"),
        ("unhappy", "happy"),
        ("nostalgic", "nostalgia"),
        ("solemn", "solemnity"),
        ("calming", "calm"),
    ],
)
def test_inflections_are_related(a, b):
    assert words.related(a, b) and words.related(b, a)


@pytest.mark.parametrize("a, b", [("good", "happy"), ("bad", "calm"), ("idle", "sad"), ("wired", "tense")])
def test_different_words_are_not_related(a, b):
    assert not words.related(a, b)


def test_check_disjoint_raises_on_overlap_and_names_the_words():
    held_out = words.evaluation_words(*_reference())
    assert {"aggressive", "mellow", "laid-back", "at ease", "joyful", "jolly"} <= held_out
    with pytest.raises(ValueError, match=r"pole words .*happiness~happy"):
        words.check_disjoint(["good", "happiness"], held_out, "pole words")
    words.check_disjoint(["good", "bad"], held_out, "pole words")  # no overlap: no error


def test_real_word_lists_pass_and_a_clashing_pole_word_fails(monkeypatch):
    norms = ls.load_norms()
    words.check_word_lists(norms)
    monkeypatch.setitem(words.AROUSAL_POLES, "motion", (["lively", "excitedly"], ["drowsy"]))
    with pytest.raises(ValueError, match="excitedly~excited"):
        words.check_word_lists(norms)


def test_dev_split_keeps_every_group_in_both_halves():
    tune, check = ls.dev_split(words.DEV_GROUPS)
    for group, members in words.DEV_GROUPS.items():
        assert tune[group] and check[group] and not set(tune[group]) & set(check[group])
        assert sorted(tune[group] + check[group]) == sorted(members)


def test_choosing_on_dev_never_encodes_a_held_out_word():
    log = []
    enc = fake_encoder(log=log)
    tune, _ = ls.dev_split(words.DEV_GROUPS)
    chosen = ls.choose_on_dev(enc, tune, ls.load_norms()["warriner_2013_vad"]["words"])
    assert chosen["w"] in ls.W_GRID and chosen["common"] in ls.COMMON_GRID
    held = words.evaluation_words(*_reference())
    encoded = set(log)
    leaked = {w for w in held for t in words.TEMPLATE_POOL if t.format(w) in encoded}
    assert not leaked


# ------------------------------------------------------------------------------------- held-out measures on toys
def test_nearest_label_accuracy_on_a_hand_made_example():
    labels = {"A": ["glad", "gloomy", "film"], "B": ["cheery", "blue", "ad"]}
    meaning = {"A": {"glad": "joy", "gloomy": "sad"}, "B": {"cheery": "joy", "blue": "sad"}}
    vectors = {
        "A": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
        "B": np.array([[0.9, 0.1], [0.8, 0.2], [0.0, 1.0]]),
    }
    # A->B: glad -> cheery (right); gloomy -> ad (unmapped: wrong); film is unmapped and not scored.
    # B->A: cheery -> glad (right); blue -> glad (wrong).
    out = ls.nearest_label_accuracy(vectors, labels, meaning)
    assert out["per_pair"] == {"A->B": {"correct": 1, "cases": 2}, "B->A": {"correct": 1, "cases": 2}}
    assert out["accuracy"] == 0.5 and out["cases"] == 4


def test_gems_triplets_and_nearest_synonym_on_hand_made_examples():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert ls.gems_triplet_fraction(v, ["x", "x", "y", "y"]) == 1.0
    # x = {0, 2}, y = {1, 3}: of the 8 triples only (1; 3 vs 2) and (3; 1 vs 0) put the same-factor pair closer
    assert ls.gems_triplet_fraction(v, ["x", "y", "x", "y"]) == 0.25
    assert ls.nearest_group_accuracy(v, ["x", "x", "y", "y"]) == 1.0
    assert ls.nearest_group_accuracy(v, ["x", "y", "y", "x"]) == 0.0


# ------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: ls.normalize(np.zeros((2, 3))), "x"),
        (lambda: ls.templates_only(["no slot"]).vectors(["sad"], fake_encoder()), "templates"),
        (lambda: ls.templates_only(["{} and {}"]).vectors(["sad"], fake_encoder()), "templates"),
        (lambda: ls.Representation(None).vectors([], fake_encoder()), "labels"),
        (lambda: ls.with_axes(fake_encoder(), ["{}"], ([], ["bad"]), (["a"], ["b"]), 2.0), "positive"),
        (lambda: ls.pair_spearman(np.ones((3, 2)), np.eye(4)), "vectors"),
        (lambda: ls.gems_triplet_fraction(np.eye(3), ["x", "x", "x"]), "factors"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# ------------------------------------------------------------------------------------- files and the whole run
def test_norms_files_cite_their_source_and_licence_and_the_maps_match_the_vocabularies():
    for path in (BENCH / "norms").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["source"].strip() and data["licence"].strip(), path.name
    assert len(RUSSELL) == 28
    vocabs = ls.load_norms()["vocabularies"]["vocabularies"]
    for name, mapping in words.MEANING_MAP.items():
        assert set(mapping) <= set(vocabs[name]) and set(mapping.values()) <= set(words.MEANING_GROUPS)
    assert set(words.DESCRIPTIONS) <= {label for labels in vocabs.values() for label in labels}


def test_main_writes_json_and_prints_one_table(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ls, "CachedEncoder", lambda: fake_encoder())
    assert ls.main(["--out", str(tmp_path / "out.json"), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| representation |") == 1 and "AFFECT (--label_space affect" in printed
    report = json.loads((tmp_path / "out.json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert (
        names[0] == "paper: bare label '{}'" and "affect + descriptions" in names and names[-1].startswith("DEFAULT")
    )
    assert isinstance(report["model_ships_the_dev_choice"], bool)  # a meaningless fake encoder may choose otherwise
    assert set(report["chosen_recipe"]) >= {"templates", "poles", "factors"}


def _reference():
    norms = ls.load_norms()
    taxonomies = {v: {"labels": labels} for v, labels in norms["vocabularies"]["vocabularies"].items()}
    return taxonomies, norms["russell_1980_circumplex"], norms["gems_zentner_2008"]
