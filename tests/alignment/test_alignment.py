"""Label alignment: the paper's Mean Shift partitions, degenerate-bandwidth detection, the real
MiniLM on bare labels, the four written outputs, and bad input."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import REPO_ROOT

from meralign.alignment.cli import AlignArguments, align_main  # noqa: E402
from meralign.alignment.clustering import (  # noqa: E402
    DegenerateClusteringError,
    cluster_labels,
    min_neighbors_quantile,
)
from meralign.alignment.nearest import nearest_labels  # noqa: E402
from meralign.alignment.outputs import write_alignment  # noqa: E402
from meralign.alignment.text import embed_labels, load_text_model  # noqa: E402
from meralign.towers import default_text_model_path  # noqa: E402
from meralign.vocabularies import BUILTIN, CAL500, EMOTIFY, resolve  # noqa: E402

# The paper's published label embeddings live beside the repository, never inside it.
ARTIFACTS = REPO_ROOT.parent / "shared" / "reference" / "paper-artifacts"
needs_artifacts = pytest.mark.skipif(
    not (ARTIFACTS / "label_map_mtg_CAL500.json").is_file(),
    reason=f"the paper's label embeddings and maps are not available at {ARTIFACTS}",
)
PAPER_FILES = {"mtg": "jamendo", "CAL500": "CAL500", "emotify": "emotify"}


def paper_pair(first: str, second: str):
    """The paper's expanded embeddings of two datasets, concatenated in the paper's order."""
    labels, datasets, blocks = [], [], []
    for name in (first, second):
        data = np.load(ARTIFACTS / f"label_expanded_{PAPER_FILES[name]}.npz")
        labels += [str(label) for label in data["labels"]]
        datasets += [name] * len(data["labels"])
        blocks.append(data["text_features"])
    return np.concatenate(blocks), labels, datasets


def groups(mapping: dict[str, int]) -> set[frozenset[str]]:
    """A label -> id map as a partition, so two maps compare whatever ids they use."""
    out: dict[int, set[str]] = {}
    for label, cluster in mapping.items():
        out.setdefault(cluster, set()).add(label)
    return {frozenset(members) for members in out.values()}


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def text_model():
    """The packaged all-MiniLM-L6-v2, loaded once (the loader caches it for the whole process)."""
    return load_text_model()


@pytest.fixture(scope="module")
def builtin_rows(text_model):
    """Bare-label embeddings of the three built-in vocabularies, one row per (dataset, label)."""
    labels = [label for v in BUILTIN.values() for label in v.labels]
    datasets = [v.name for v in BUILTIN.values() for _ in v.labels]
    return embed_labels(labels, model=text_model), labels, datasets


def blobs(n_per: int = 10, centers: int = 3, dim: int = 8, seed: int = 0):
    """Well separated unit-scale blobs: a clustering problem with a known answer."""
    rng = np.random.default_rng(seed)
    means = np.eye(dim)[:centers] * 10
    x = np.concatenate([m + 0.3 * rng.standard_normal((n_per, dim)) for m in means]).astype(np.float32)
    return x, [f"w{i}" for i in range(len(x))], np.repeat(np.arange(centers), n_per)


# ---------------------------------------------------------------- 1. the paper's clusterings


@needs_artifacts
@pytest.mark.parametrize("random_state", [0, 123])
def test_paper_mtg_cal500_partition_is_reproduced(random_state):
    x, labels, datasets = paper_pair("mtg", "CAL500")
    assert len(labels) == 73  # 56 MTG + the paper's 17 CAL500 labels ("laid-back, mellow" was lost)
    result = cluster_labels(x, labels, datasets=datasets, quantile=0.03, n_samples=73, random_state=random_state)
    assert not result.degenerate and not result.fallback_applied
    assert result.n_clusters == 42 and result.centers.shape == (42, 384)
    # n_samples equals the row count, so the seed only permutes the rows: the bandwidth does not move.
    assert result.bandwidth == pytest.approx(0.7736, abs=1e-4)
    # The paper's map is a dict keyed by label: for "happy"/"sad" (in both vocabularies) the later
    # (CAL500) row won. Build ours the same way, then compare groupings, not ids.
    ours = {label: int(c) for label, c in zip(labels, result.cluster_ids)}
    paper = json.loads((ARTIFACTS / "label_map_mtg_CAL500.json").read_text())
    assert set(ours) == set(paper)
    assert groups(ours) == groups(paper)


@needs_artifacts
def test_default_bandwidth_rule_is_the_papers_working_setting():
    # int(73 * 0.03) = 2 neighbours, the label itself included: the mean distance to the nearest
    # other label, which is exactly what min_neighbors=1 asks for.
    x, labels, datasets = paper_pair("mtg", "CAL500")
    assert int(73 * min_neighbors_quantile(73, 1)) == int(73 * 0.03) == 2
    default = cluster_labels(x, labels, datasets=datasets)
    paper = cluster_labels(x, labels, datasets=datasets, quantile=0.03, n_samples=73)
    assert default.bandwidth == pytest.approx(paper.bandwidth, rel=1e-6)
    assert set(default.partition()) == set(paper.partition())


@needs_artifacts
@pytest.mark.parametrize(
    "pair, quantile, n_samples",
    [
        (("mtg", "emotify"), 0.025, 65),
        (("CAL500", "emotify"), 0.04, 26),
    ],
)
def test_paper_collapsed_settings_are_flagged_and_fall_back(pair, quantile, n_samples):
    x, labels, datasets = paper_pair(*pair)
    assert len(labels) == n_samples and int(n_samples * quantile) == 1  # only the label itself
    with pytest.warns(UserWarning, match="near zero"):
        raw = cluster_labels(x, labels, datasets=datasets, quantile=quantile, n_samples=n_samples, fallback="none")
    assert raw.degenerate and raw.final_degenerate and not raw.fallback_applied
    assert raw.bandwidth < 1e-6
    assert any("near zero" in reason for reason in raw.reasons)
    with pytest.raises(DegenerateClusteringError, match="near zero"):
        cluster_labels(x, labels, datasets=datasets, quantile=quantile, n_samples=n_samples, fallback="raise")
    fixed = quiet(cluster_labels, x, labels, datasets=datasets, quantile=quantile, n_samples=n_samples)
    assert fixed.degenerate and fixed.fallback_applied and not fixed.final_degenerate
    assert 0.5 < fixed.bandwidth < 1.0
    assert 1 < fixed.n_clusters < len(labels)
    # The fallback's grouping is meaningful: sadness joins its counterpart in the other vocabulary.
    assert fixed.cluster_of("sadness", "emotify") == fixed.cluster_of("sad", pair[0])


@needs_artifacts
def test_write_alignment_shows_the_papers_embeddings(tmp_path):
    # What the README shows: the paper's own label embeddings, through the same writer.
    x, labels, datasets = paper_pair("mtg", "CAL500")
    vocabularies = [resolve(labels[:56], name="mtg"), resolve(labels[56:], name="CAL500")]
    result = write_alignment(
        tmp_path, vocabularies, embeddings={"mtg": x[:56], "CAL500": x[56:]}, quantile=0.03, n_samples=73
    )
    assert result.clusters.n_clusters == 42 and not result.clusters.degenerate
    meta = json.loads((tmp_path / "label_clusters.json").read_text())
    assert meta["model"] == "precomputed embeddings" and meta["settings"]["quantile"] == 0.03
    paper = json.loads((ARTIFACTS / "label_map_mtg_CAL500.json").read_text())
    ours = {row["label"]: row["cluster"] for row in meta["labels"]}  # later rows win, as in the paper
    assert groups(ours) == groups(paper)


# ---------------------------------------------------------------- degeneracy without the artifacts


def test_collapsed_bandwidth_on_blobs_is_detected_and_fixed():
    x, labels, truth = blobs()
    assert int(len(x) * 0.03) == 0  # sklearn then uses 1 neighbour: the point itself
    with pytest.warns(UserWarning, match="near zero"):
        raw = cluster_labels(x, labels, quantile=0.03, fallback="none")
    assert raw.degenerate and raw.bandwidth < 1e-3 * raw.settings["mean_nearest_label_distance"]
    # Each blob has 10 points: a bandwidth from the 9th-nearest-label distance spans a blob.
    with pytest.warns(UserWarning, match="degenerate"):
        fixed = cluster_labels(x, labels, quantile=0.03, min_neighbors=9)
    assert fixed.fallback_applied and not fixed.final_degenerate and fixed.n_clusters == 3
    assert {frozenset(np.flatnonzero(fixed.cluster_ids == c)) for c in range(3)} == {
        frozenset(np.flatnonzero(truth == c)) for c in range(3)
    }


def test_too_wide_bandwidth_is_flagged():
    x, labels, _ = blobs()
    with pytest.warns(UserWarning, match="too wide"):
        result = cluster_labels(x, labels, bandwidth=100.0, fallback="none")
    assert result.degenerate and result.n_clusters == 1 and result.bandwidth == 100.0
    with pytest.raises(DegenerateClusteringError, match="holds 30 of 30 labels"):
        cluster_labels(x, labels, bandwidth=100.0, fallback="raise")


def test_every_label_alone_is_flagged():
    x, labels, _ = blobs()
    with pytest.warns(UserWarning, match="every label is its own cluster"):
        result = cluster_labels(x, labels, bandwidth=0.05, fallback="none")
    assert result.degenerate and result.n_clusters == len(labels)


# ---------------------------------------------------------------- 2. the real MiniLM on bare labels


def test_embed_labels_matches_the_model(text_model):
    labels = ["sad", "joyful", "tense"]
    x = embed_labels(labels, model=text_model)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    direct = text_model.encode(labels, normalize_embeddings=True)
    np.testing.assert_allclose(x, direct, atol=1e-5)
    # Cached: loaded once per process, whichever way the default is named.
    assert load_text_model(None) is text_model and load_text_model(default_text_model_path()) is text_model
    np.testing.assert_allclose(embed_labels(labels), x, atol=1e-6)  # model=None: the same default model
    assert Path(default_text_model_path(), "config.json").is_file()


def test_template_and_descriptions(text_model):
    templated = embed_labels(["sad"], model=text_model, template="music that sounds {}")
    np.testing.assert_allclose(
        templated[0], text_model.encode("music that sounds sad", normalize_embeddings=True), atol=1e-5
    )
    texts = ["sad", "a slow, sorrowful song", "tears and grief"]
    augmented = embed_labels(["sad", "happy"], model=text_model, descriptions={"sad": texts[1:]})
    mean = text_model.encode(texts, normalize_embeddings=True).mean(axis=0)
    np.testing.assert_allclose(augmented[0], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(augmented[1], text_model.encode("happy", normalize_embeddings=True), atol=1e-5)


def test_sad_and_sadness_align_at_the_default_setting(builtin_rows):
    # Setting: all three built-in vocabularies (83 rows), bare labels, cluster_labels' defaults
    # (quantile=None -> bandwidth = mean distance to the nearest other label, min_neighbors=1).
    x, labels, datasets = builtin_rows
    result = cluster_labels(x, labels, datasets=datasets)
    assert not result.degenerate
    sad = result.cluster_of("sad", "cal500")
    assert result.cluster_of("sadness", "emotify") == sad
    assert result.cluster_of("sad", "mtg-jamendo") == sad
    assert result.cluster_of("happy", "cal500") != sad
    assert result.cluster_of("happy", "mtg-jamendo") == result.cluster_of("happy", "cal500")
    assert result.by_dataset()["emotify"]["sadness"] == sad and result.assignments["sadness"] == sad


def test_sklearn_default_quantile_swallows_bare_labels(builtin_rows):
    # Why the default is not sklearn's quantile=0.3: every label lies ~0.84 from the labels' mean,
    # so a wider flat kernel drifts there and takes everything.
    x, labels, datasets = builtin_rows
    with pytest.warns(UserWarning, match="too wide"):
        raw = cluster_labels(x, labels, datasets=datasets, quantile=0.3, fallback="none")
    assert raw.degenerate and np.bincount(raw.cluster_ids).max() > 0.9 * len(labels)
    fixed = quiet(cluster_labels, x, labels, datasets=datasets, quantile=0.3)
    assert fixed.fallback_applied and not fixed.final_degenerate
    assert fixed.cluster_of("sadness", "emotify") == fixed.cluster_of("sad", "cal500")


def test_nearest_label_table(builtin_rows):
    x, labels, datasets = builtin_rows
    rows = lambda name: [i for i, d in enumerate(datasets) if d == name]  # noqa: E731
    table = nearest_labels(
        x[rows("cal500")], CAL500.labels, x[rows("emotify")], EMOTIFY.labels, k=3, source="cal500", target="emotify"
    )
    near = dict(table.rows)
    assert len(table.rows) == len(CAL500) and all(len(v) == 3 for v in near.values())
    assert near["sad"][0][0] == "sadness"
    assert near["calming, soothing"][0][0] == "calmness"
    cosines = [c for _, c in near["sad"]]
    assert cosines == sorted(cosines, reverse=True) and 0.5 < cosines[0] <= 1.0
    markdown = table.to_markdown()
    assert markdown.startswith("| cal500 label | nearest emotify labels (cosine) |")
    assert f"| sad | sadness ({cosines[0]:.2f})" in markdown


def test_nearest_labels_exact_cosines_and_escaping():
    a = np.array([[1, 0], [0, 2]], dtype=np.float32)  # not unit: cosine must still be exact
    b = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    table = nearest_labels(a, ["x|y", "z"], b, ["p", "q", "r"], k=2)
    assert [o for o, _ in table.rows[0][1]] == ["p", "q"]
    assert table.rows[0][1][1][1] == pytest.approx(2**-0.5)
    assert [o for o, _ in table.rows[1][1]] == ["r", "q"]
    assert "x\\|y" in table.to_markdown()


def test_same_string_in_two_vocabularies_is_kept_per_dataset():
    x = np.array([[0, 0.1], [0.1, 0], [10, 0.1], [10.1, 0], [5, 9], [5.1, 9]], dtype=np.float32)
    labels = ["shared", "a1", "shared", "b1", "c1", "c2"]
    datasets = ["A", "A", "B", "B", "C", "C"]
    with pytest.warns(UserWarning, match="different clusters"):
        result = cluster_labels(x, labels, datasets=datasets, bandwidth=1.0)
    assert result.cluster_of("shared", "A") == result.cluster_of("a1", "A")
    assert result.cluster_of("shared", "B") == result.cluster_of("b1", "B")
    assert result.cluster_of("shared", "A") != result.cluster_of("shared", "B")
    assert result.assignments["shared"] == result.cluster_of("shared", "A")  # first row wins, said so


# ---------------------------------------------------------------- 3. the written outputs


def test_cli_writes_the_four_outputs(tmp_path, text_model):
    out = tmp_path / "align"
    # Bare cal500 + emotify: the 1-nearest-label bandwidth over-merges, is flagged, and is narrowed.
    with pytest.warns(UserWarning, match="too wide"):
        assert align_main(["--vocabularies", "cal500", "emotify", "--output_dir", str(out)]) == 0
    names = {"label_clusters.json", "label_centers.npz", "label_clusters.md", "label_clusters.png"}
    assert {p.name for p in out.iterdir()} == names  # and no temp files left behind
    meta = json.loads((out / "label_clusters.json").read_text())
    assert meta["degenerate"] is True and meta["fallback_applied"] is True and meta["final_degenerate"] is False
    assert (
        meta["settings"]["fallback"] == "min_neighbors" and meta["bandwidth"] < meta["settings"]["requested_bandwidth"]
    )
    assert len(meta["labels"]) == 27 and {row["dataset"] for row in meta["labels"]} == {"cal500", "emotify"}
    assert meta["assignments"]["cal500"]["sad"] == meta["assignments"]["emotify"]["sadness"]
    assert "laid-back, mellow" in meta["assignments"]["cal500"]
    with np.load(out / "label_centers.npz") as npz:
        assert npz["centers"].shape == (meta["n_clusters"], 384)
        assert [int(c) for c in npz["cluster_ids"]] == [row["cluster"] for row in meta["labels"]]
        assert list(npz["labels"]) == [row["label"] for row in meta["labels"]]
    report = (out / "label_clusters.md").read_text()
    assert "sad (cal500), sadness (emotify)" in report
    assert "Degenerate setting" in report and "### cal500 -> emotify" in report and "### emotify -> cal500" in report
    from PIL import Image

    with Image.open(out / "label_clusters.png") as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 0
    assert len(np.unique(pixels, axis=0)) > 20


def test_write_alignment_with_a_user_vocabulary_file_and_template(tmp_path, text_model):
    vocab = tmp_path / "mine.txt"
    vocab.write_text("melancholic\njoyful\nserene\ntense\n")
    result = quiet(
        write_alignment,
        tmp_path / "out",
        [str(vocab), "emotify"],
        model=text_model,
        template="music that sounds {}",
        bandwidth=0.8,
    )
    assert [v.name for v in result.vocabularies] == ["mine", "emotify"]
    assert result.embeddings.shape == (13, 384)
    templated = embed_labels(["serene"], model=text_model, template="music that sounds {}")
    np.testing.assert_allclose(result.embeddings[2], templated[0], atol=1e-5)
    meta = json.loads((tmp_path / "out" / "label_clusters.json").read_text())
    assert meta["template"] == "music that sounds {}" and meta["settings"]["bandwidth"] == 0.8
    assert set(meta["assignments"]) == {"mine", "emotify"}


def test_align_arguments_parse_with_hf_argument_parser():
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(AlignArguments).parse_args_into_dataclasses(
        args=[
            "--output_dir",
            "o",
            "--vocabularies",
            "mtg",
            "CAL500",
            "--quantile",
            "0.03",
            "--n_samples",
            "73",
            "--fallback",
            "raise",
        ]
    )
    assert args.vocabularies == ["mtg", "CAL500"] and args.quantile == 0.03 and args.n_samples == 73
    assert args.fallback == "raise" and args.bandwidth is None
    with pytest.raises(SystemExit):
        HfArgumentParser(AlignArguments).parse_args_into_dataclasses(args=["--output_dir", "o", "--fallback", "x"])


# ---------------------------------------------------------------- 4. bad input


def test_empty_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="vocabularies is empty"):
        write_alignment(tmp_path, [])
    with pytest.raises(ValueError, match="vocabulary is empty"):
        write_alignment(tmp_path, [[], "emotify"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        write_alignment(tmp_path, [str(empty)])
    with pytest.raises(ValueError, match="labels is empty"):
        embed_labels([])
    with pytest.raises(ValueError, match="labels is empty"):
        cluster_labels(np.zeros((0, 4)), [], datasets=[])


def test_duplicate_labels_within_a_vocabulary_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'sad' more than once"):
        write_alignment(tmp_path, [["sad", "happy", "sad"]])
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="'a' more than once"):
        cluster_labels(x, ["a", "b", "a"])
    with pytest.raises(ValueError, match="labels of dataset 'A' contains the label 'a' more than once"):
        cluster_labels(x, ["a", "b", "a"], datasets=["A", "B", "A"])
    with pytest.raises(ValueError, match="distinct names"):
        write_alignment(tmp_path, ["emotify", "emotify"])


def test_embeddings_labels_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="embeddings has 3 rows but labels has 2 entries"):
        cluster_labels(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="datasets has 1 entries but labels has 3"):
        cluster_labels(np.eye(3), ["a", "b", "c"], datasets=["A"])
    with pytest.raises(ValueError, match="embeddings must be a 2-D array"):
        cluster_labels(np.ones(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="embeddings_a has dimension 3 but embeddings_b has 2"):
        nearest_labels(np.eye(3), ["a", "b", "c"], np.eye(2), ["p", "q"])


def test_nan_embeddings_are_refused():
    x = np.eye(3)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="embeddings contains NaN or infinite values"):
        cluster_labels(x, ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        nearest_labels(x, ["a", "b", "c"], np.eye(3), ["p", "q", "r"])


def test_bad_settings_are_refused(text_model):
    x, labels, _ = blobs()
    with pytest.raises(ValueError, match="fallback must be one of"):
        cluster_labels(x, labels, fallback="maybe")
    with pytest.raises(ValueError, match="quantile must be in"):
        cluster_labels(x, labels, quantile=1.5)
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        cluster_labels(x, labels, bandwidth=0.0)
    with pytest.raises(ValueError, match="min_neighbors=30 needs at least 31 labels"):
        cluster_labels(x, labels, min_neighbors=30)
    with pytest.raises(ValueError, match="at least 2 labels"):
        cluster_labels(x[:1], labels[:1])
    with pytest.raises(ValueError, match="template must be a string containing '{}' exactly once"):
        embed_labels(["sad"], model=text_model, template="music that sounds sad")
    with pytest.raises(ValueError, match="template must be a string containing '{}' exactly once"):
        embed_labels(["sad"], model=text_model, template="music that sounds {label}")  # one template rule
    with pytest.raises(ValueError, match="descriptions has entries for labels that are not in labels"):
        embed_labels(["sad"], model=text_model, descriptions={"glad": ["x"]})
    with pytest.raises(ValueError, match="vocabulary 'no-such-vocabulary' is neither a known name"):
        write_alignment("unused", ["no-such-vocabulary"])
