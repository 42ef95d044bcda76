"""The label space: the shipped transform (scoring_meralign), its builder, and the model and pipeline using it."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import scoring_meralign as S
from configuration_meralign import MERAlignConfig
from meralign.alignment.label_space import build_label_space, label_vectors, resolve_label_space

DIM = 6


class FakeEncoder:
    """A deterministic 'sentence-transformer': each text gets a fixed random unit vector."""

    def encode(self, texts, **kwargs):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


RECIPE = {
    "templates": ["{} music", "I feel {}."],
    "poles": {
        "valence": {"positive": ["good", "nice"], "negative": ["bad", "awful"]},
        "arousal": {"positive": ["alert"], "negative": ["idle", "lazy"]},
    },
    "common_words": ["warm", "grim", "bold"],
    "factors": {"valence": 4.0, "arousal": 3.0, "common": 0.0},
}


def test_matrix_rescales_exactly_its_directions():
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((DIM, 2)))[0].T
    space = {"templates": ["{}"], "directions": directions.tolist(), "factors": [4.0, 0.0], "names": ["a", "b"]}
    matrix = S.label_space_matrix(space, DIM)
    v = np.random.default_rng(1).standard_normal(DIM)
    expected = v + 3.0 * (directions[0] @ v) * directions[0] - 1.0 * (directions[1] @ v) * directions[1]
    np.testing.assert_allclose(matrix @ v, expected, atol=1e-6)
    assert (directions[1] @ (matrix @ v)) == pytest.approx(0.0, abs=1e-6)  # factor 0 removes the direction
    np.testing.assert_array_equal(S.label_space_matrix(None, DIM), np.eye(DIM, dtype=np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"templates": ["no slot"]}, "label_space\\['templates'\\] entry must be a string containing"),
        ({"templates": []}, "must be a non-empty list of templates"),
        ({"directions": [[1.0, 0.0]]}, "must be \\[n, 6\\] \\(the text tower's size 6\\)"),
        ({"factors": [1.0, 2.0]}, "needs one finite factor and one name per direction"),
        ({"directions": [[2.0] + [0.0] * 5]}, "directions must be orthonormal"),
    ],
)
def test_check_label_space_names_what_is_wrong(change, message):
    space = {"templates": ["{}"], "directions": [[1.0] + [0.0] * 5], "factors": [2.0], "names": ["valence"], **change}
    with pytest.raises(ValueError, match=message):
        S.check_label_space(space, DIM)


def test_builder_makes_orthonormal_axes_from_pole_words():
    encoder = FakeEncoder()
    space = build_label_space(RECIPE, model=encoder)
    directions = np.asarray(space["directions"])
    assert space["names"] == ["valence", "arousal", "common"] and space["factors"] == [4.0, 3.0, 0.0]
    np.testing.assert_allclose(directions @ directions.T, np.eye(3), atol=1e-6)
    plain = {"templates": RECIPE["templates"], "directions": [], "factors": [], "names": []}
    mean = lambda words: label_vectors(words, plain, model=encoder).mean(axis=0)  # noqa: E731
    axis = mean(["good", "nice"]) - mean(["bad", "awful"])
    np.testing.assert_allclose(directions[0], axis / np.linalg.norm(axis), atol=1e-5)  # valence kept exactly
    low, high = space["poles"]["valence"]
    assert low < high  # the negative pole words sit below the positive ones on their axis
    coordinates = S.affect_coordinates(label_vectors(["good", "nice", "bad", "awful"], space, encoder), space)
    assert coordinates["valence"][:2].mean() == pytest.approx(1.0) and coordinates["valence"][
        2:
    ].mean() == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "poles, message",
    [
        (
            {"positive": ["good", ""], "negative": ["bad"]},
            "poles\\['valence'\\]\\['positive'\\] must hold non-empty strings",
        ),
        ({"positive": ["good", 3], "negative": ["bad"]}, "must hold non-empty strings"),
        ({"positive": [], "negative": ["bad"]}, "must be a non-empty list of words"),
        ({"positive": ["good"]}, "poles\\['valence'\\] must be"),
    ],
)
def test_bad_pole_words_are_refused(poles, message):
    recipe = {**RECIPE, "poles": {**RECIPE["poles"], "valence": poles}}
    with pytest.raises(ValueError, match=message):
        build_label_space(recipe, model=FakeEncoder())


def test_resolve_names_and_files(tmp_path):
    assert resolve_label_space("paper") is None
    with pytest.raises(ValueError, match="--label_space must be one of"):
        resolve_label_space("nonsense")
    path = tmp_path / "recipe.json"
    path.write_text(__import__("json").dumps(RECIPE))
    assert resolve_label_space(str(path), FakeEncoder())["names"] == ["valence", "arousal", "common"]


def test_config_refuses_inconsistent_label_spaces(tiny_model):
    fields = tiny_model.config.to_dict()
    for key in ("model_type", "transformers_version", "auto_map", "architectures"):
        fields.pop(key, None)
    with pytest.raises(ValueError, match="must be \\[n, 384\\]"):
        MERAlignConfig(
            **{
                **fields,
                "label_space": {
                    "templates": ["{}"],
                    "directions": [[1.0, 0.0]],
                    "factors": [2.0],
                    "names": ["valence"],
                },
            }
        )
    with pytest.raises(ValueError, match="affect_calibration needs a label_space"):
        MERAlignConfig(**{**fields, "label_space": None, "affect_calibration": {"valence": [1, 0], "arousal": [1, 0]}})
    space = resolve_label_space("default")
    maps = {"valence": [1, 0], "arousal": [1, 0]}
    for anchors in ([], "happy", ["happy", ""], ["happy", 3]):
        with pytest.raises(
            ValueError, match=r"affect_calibration\['anchors'\] must be a non-empty list of label words"
        ):
            MERAlignConfig(**{**fields, "label_space": space, "affect_calibration": {**maps, "anchors": anchors}})
    with pytest.raises(ValueError, match="affect_calibration must be"):
        MERAlignConfig(**{**fields, "label_space": space, "affect_calibration": {**maps, "dominance": [1, 0]}})
    config = MERAlignConfig(**{**fields, "label_space": space, "affect_calibration": {**maps, "anchors": ["happy"]}})
    assert config.affect_calibration["anchors"] == ["happy"]


@pytest.fixture(scope="module")
def default_space():
    return resolve_label_space("default")


def test_model_label_embeddings_equal_the_training_side_vectors(tiny_model, default_space):
    """What the model scores against (its text tower + the transform + the ensemble) is what training targeted
    (sentence-transformers + the same transform), while get_text_features stays the plain sentence embedding."""
    from transformers import AutoTokenizer

    labels = ["melancholic", "joyful_activation", "angry, aggressive", "tender"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model.config.text_name_or_path)
    config = tiny_model.config
    try:
        config.label_space = default_space
        templates = S.label_templates(config.label_space, config.hypothesis_template)
        texts = [t.format(S.label_text(label, config.label_space)) for label in labels for t in templates]
        with torch.inference_mode():
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            model_vectors = S.combine_templates(tiny_model.get_label_embeddings(**tokens).numpy(), len(templates))
            plain = tiny_model.get_text_features(**tokens).numpy()
    finally:
        config.label_space = None
    expected = label_vectors(labels, default_space)
    assert (model_vectors * expected).sum(axis=1).min() > 0.9999
    reference = label_vectors(texts, None)  # bare sentence embeddings of the same texts
    assert (plain * reference).sum(axis=1).min() > 0.9999
