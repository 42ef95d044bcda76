"""Losses: hand-computed values on tiny inputs, gradients, negative sampling, input errors."""

import math

import pytest
import torch

from meralign.losses import (
    DatasetBatch,
    MERAlignLoss,
    affect_loss,
    alignment_regularizer,
    label_contrastive_loss,
    positive_negative_targets,
    primary_cluster_ids,
    triplet_cosine_loss,
)

E = torch.eye(4)  # one-hot label embeddings: a target's entries read off which labels were averaged


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- triplet


def test_triplet_hand_values_and_reductions():
    z = t([[1, 0], [0, 1]])
    positive = t([[1, 0], [1, 0]])  # cos 1, cos 0
    negative = t([[0, 1], [0, 1]])  # cos 0, cos 1
    # row 0: max(0, 0 - 1 + 1) = 0; row 1: max(0, 1 - 0 + 1) = 2
    assert torch.allclose(triplet_cosine_loss(z, positive, negative, reduction="none"), t([0, 2]))
    assert triplet_cosine_loss(z, positive, negative).item() == pytest.approx(1.0)
    assert triplet_cosine_loss(z, positive, negative, reduction="sum").item() == pytest.approx(2.0)
    assert torch.allclose(triplet_cosine_loss(z, positive, negative, margin=0.5, reduction="none"), t([0, 1.5]))


def test_triplet_uses_cosine_not_dot_product():
    z = t([[1, 0]])
    # positive at 45 degrees with norm 0.5; negative opposite with norm 3: cosines are 1/sqrt(2) and -1
    loss = triplet_cosine_loss(z, t([[0.25 * math.sqrt(2), 0.25 * math.sqrt(2)]]), t([[-3, 0]]), margin=2.0)
    assert loss.item() == pytest.approx(-1 - 1 / math.sqrt(2) + 2, abs=1e-6)


def test_triplet_shape_and_reduction_errors():
    z = t([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="positive"):
        triplet_cosine_loss(z, t([[1, 0]]), z)
    with pytest.raises(ValueError, match="negative"):
        triplet_cosine_loss(z, z, t([[1, 0, 0], [0, 1, 0]]))
    with pytest.raises(ValueError, match="reduction"):
        triplet_cosine_loss(z, z, z, reduction="max")
    with pytest.raises(ValueError, match="z must be a 2-D float"):
        triplet_cosine_loss(t([1, 0]), t([1, 0]), t([1, 0]))


# ---------------------------------------------------------------- targets


def test_targets_positive_mean_and_all_negatives_when_fewer_than_requested():
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0]])
    positive, negative = positive_negative_targets(labels, E, n_negatives=5)
    assert torch.allclose(positive, t([[1, 0, 0, 0], [0, 0.5, 0.5, 0]]))
    # fewer than 5 negatives: all of them, averaged
    assert torch.allclose(negative, t([[0, 1 / 3, 1 / 3, 1 / 3], [0.5, 0, 0, 0.5]]))
    positive, negative = positive_negative_targets(labels.bool(), E, n_negatives=5, normalize=True)
    assert torch.allclose(positive[1], t([0, 1, 1, 0]) / math.sqrt(2))
    assert torch.allclose(negative.norm(dim=1), torch.ones(2))


def test_negative_sampling_never_picks_a_positive_and_is_uniform():
    batch = 3000
    labels = torch.zeros(batch, 6)
    labels[:, 0] = 1
    labels[: batch // 2, 3] = 1  # half the rows have a second positive
    _, negative = positive_negative_targets(
        labels, torch.eye(6), n_negatives=2, generator=torch.Generator().manual_seed(0)
    )
    picked = negative * 2  # identity embeddings: the two chosen labels get 1
    assert torch.allclose(picked.sum(dim=1), torch.full((batch,), 2.0))
    assert set(picked.unique().tolist()) <= {0.0, 1.0}
    assert (picked * labels).sum() == 0, "a positive label was sampled as a negative"
    # rows with 5 candidates pick each with probability 2/5: 600 of 1500 expected, sd ~19
    counts = picked[batch // 2 :, [1, 2, 3, 4, 5]].sum(dim=0)
    assert ((counts - 600).abs() < 100).all(), counts


def test_negative_sampling_is_deterministic_for_a_seed():
    labels = torch.zeros(64, 10)
    labels[:, 0] = 1
    embeddings = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))

    def draw(seed):
        return positive_negative_targets(
            labels, embeddings, n_negatives=3, generator=torch.Generator().manual_seed(seed)
        )[1]

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_target_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] has no positive"):
        positive_negative_targets(torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]), E)
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] has no negative"):
        positive_negative_targets(torch.tensor([[1, 1, 1, 1], [0, 1, 0, 0]]), E)
    with pytest.raises(ValueError, match="label_embeddings has 4 rows but label_matrix has 3"):
        positive_negative_targets(torch.tensor([[1, 0, 0]]), E)
    with pytest.raises(ValueError, match="multi-hot"):
        positive_negative_targets(torch.tensor([[2, 0, 0, 0]]), E)
    with pytest.raises(ValueError, match="n_negatives"):
        positive_negative_targets(torch.tensor([[1, 0, 0, 0]]), E, n_negatives=0)


# ---------------------------------------------------------------- regulariser


def test_push_single_cluster_is_zero_and_finite():
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = alignment_regularizer(z, torch.tensor([4, 4, 4]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()
    one = alignment_regularizer(t([[1, 0]]), torch.tensor([0]))
    assert one.item() == 0.0


def test_push_all_distinct_clusters_hand_value():
    z = t([[1, 0], [0, 1], [-1, 0]])
    # cos01 = 0, cos02 = -1, cos12 = 0 -> rows: relu(1 - 0.5), relu(1 + 0), relu(1 - 0.5)
    assert alignment_regularizer(z, torch.tensor([0, 1, 2])).item() == pytest.approx(2 / 3)
    w = t([[1, 0], [1 / math.sqrt(2), 1 / math.sqrt(2)], [0, 1]])
    expected = (2 * (1 + 0.5 / math.sqrt(2)) + (1 + 1 / math.sqrt(2))) / 3
    assert alignment_regularizer(w, torch.tensor([0, 1, 2])).item() == pytest.approx(expected, abs=1e-6)


def test_push_and_pull_push_two_clusters_hand_values():
    z = t([[1, 0], [0, 1], [-1, 0], [0, -1]])
    ids = torch.tensor([0, 0, 1, 1])
    # each row meets the other cluster at cosines {-1, 0}: relu(1 - 0.5) = 0.5
    assert alignment_regularizer(z, ids, form="push").item() == pytest.approx(0.5)
    # pull: its one same-cluster partner is orthogonal -> 1; push relu(c - 0) over {-1, 0} -> 0
    assert alignment_regularizer(z, ids, form="pull_push").item() == pytest.approx(1.0)
    # margin -0.5: push mean of relu(-0.5), relu(0.5) = 0.25
    assert alignment_regularizer(z, ids, form="pull_push", margin=-0.5).item() == pytest.approx(1.25)


def test_pull_push_empty_sets_contribute_zero():
    w = t([[1, 0], [1 / math.sqrt(2), 1 / math.sqrt(2)], [0, 1]])
    # all singletons: no pull; push = mean cos to the others (all >= 0)
    expected = (0.5 / math.sqrt(2) + 1 / math.sqrt(2) + 0.5 / math.sqrt(2)) / 3
    assert alignment_regularizer(w, torch.tensor([0, 1, 2]), form="pull_push").item() == pytest.approx(
        expected, abs=1e-6
    )
    # one cluster: no push; pull = 1 - cos to the others
    same = alignment_regularizer(w, torch.tensor([0, 0, 0]), form="pull_push")
    assert same.item() == pytest.approx(1 - expected, abs=1e-6)
    assert alignment_regularizer(t([[3, 4]]), torch.tensor([0]), form="pull_push").item() == 0.0


@pytest.mark.parametrize("form", ["push", "pull_push"])
def test_regularizer_gradients_finite_even_with_a_zero_row(form):
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    z[2] = 0.0
    z.requires_grad_(True)
    loss = alignment_regularizer(z, torch.tensor([0, 1, 1, 2, 0, 2]), form=form)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


def test_regularizer_errors():
    z = t([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="cluster_ids must have shape"):
        alignment_regularizer(z, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="cluster_ids must be an integer"):
        alignment_regularizer(z, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="form"):
        alignment_regularizer(z, torch.tensor([0, 1]), form="pull")
    with pytest.raises(ValueError, match="margin"):
        alignment_regularizer(z, torch.tensor([0, 1]), form="push", margin=0.2)


def test_primary_cluster_ids():
    labels = torch.tensor([[0, 1, 1], [1, 0, 1]])
    clusters = torch.tensor([7, 8, 9])
    assert primary_cluster_ids(labels, clusters).tolist() == [8, 7]
    votes = t([[0, 1, 5], [3, 0, 3]])  # row 0: most voted is label 2; row 1: tie -> first, label 0
    assert primary_cluster_ids(labels, clusters, votes).tolist() == [9, 7]
    with pytest.raises(ValueError, match="no positive"):
        primary_cluster_ids(torch.tensor([[0, 0, 0]]), clusters)
    with pytest.raises(ValueError, match="label_clusters"):
        primary_cluster_ids(labels, torch.tensor([1, 2]))


# ---------------------------------------------------------------- contrastive


def test_contrastive_hand_values_multi_positive_and_reductions():
    z = t([[1, 0, 0], [0, 1, 0]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 1]])  # row 1 has two positives: half the target mass on each
    embeddings = 2 * torch.eye(3)  # normalised inside: only directions count
    temperature = 0.5
    logits = torch.eye(3)[:2] / temperature
    log_p = logits.log_softmax(dim=1)
    expected = torch.stack([-log_p[0, 0], -(log_p[1, 1] + log_p[1, 2]) / 2])
    got = label_contrastive_loss(z, labels, embeddings, temperature, reduction="none")
    assert torch.allclose(got, expected, atol=1e-6)
    assert label_contrastive_loss(z, labels, embeddings, temperature).item() == pytest.approx(expected.mean().item())
    assert label_contrastive_loss(z, labels, embeddings, temperature, "sum").item() == pytest.approx(
        expected.sum().item()
    )


def test_contrastive_every_wrong_label_competes():
    """Moving z from its positive towards any one wrong label raises the loss; a lower temperature sharpens it."""
    labels = torch.tensor([[1, 0, 0, 0]])
    on_positive = label_contrastive_loss(t([[1, 0, 0, 0]]), labels, E)
    for wrong in (1, 2, 3):
        z = t([[1, 0, 0, 0]])
        z[0, wrong] = 0.8
        assert label_contrastive_loss(z, labels, E).item() > on_positive.item()
    assert label_contrastive_loss(t([[1, 0, 0, 0]]), labels, E, 0.05) < label_contrastive_loss(
        t([[1, 0, 0, 0]]), labels, E, 1.0
    )


def test_contrastive_input_errors():
    z, labels = t([[1, 0, 0, 0]]), torch.tensor([[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="temperature"):
        label_contrastive_loss(z, labels, E, temperature=0.0)
    with pytest.raises(ValueError, match="shapes do not agree"):
        label_contrastive_loss(z, labels, torch.eye(3))
    with pytest.raises(ValueError, match="no positive"):
        label_contrastive_loss(z, torch.tensor([[0, 0, 0, 0]]), E)
    with pytest.raises(ValueError, match="reduction"):
        label_contrastive_loss(z, labels, E, reduction="max")
    with pytest.raises(ValueError, match="objective"):
        MERAlignLoss(objective="listwise")


# ---------------------------------------------------------------- affect


def test_affect_loss_hand_value():
    """Two axes along the first two coordinates, scaled by 2 with bias -1: a unit z along axis 0 sits at (1, -1);
    its labels' mean coordinates are the target."""
    weight, bias = 2 * torch.eye(4)[:, :2], t([-1, -1])
    coordinates = t([[1, -1], [-1, 1], [0, 0], [0.5, 0.5]])
    z = t([[3, 0, 0, 0], [0, 0, 0, 1]])  # normalised inside
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0]])  # row 1's target: mean of (-1, 1) and (0, 0)
    # row 0 sits on its target; row 1 predicts (-1, -1) against (-0.5, 0.5): squared errors 0.25 and 2.25
    assert affect_loss(z, labels, coordinates, weight, bias).item() == pytest.approx((0 + 0 + 0.25 + 2.25) / 4)
    with pytest.raises(ValueError, match="no positive"):
        affect_loss(z, torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0]]), coordinates, weight, bias)


def test_meralign_loss_adds_the_weighted_affect_term():
    weight, bias = torch.eye(3)[:, :2], torch.zeros(2)
    coordinates = t([[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]])
    batch = DatasetBatch(t([[1, 0, 0]]), torch.tensor([[0, 1, 0]]), torch.eye(3), torch.tensor([0, 1, 2]), coordinates)
    plain = MERAlignLoss(regularizer="none")([batch], generator=torch.Generator().manual_seed(0))
    weighted = MERAlignLoss(regularizer="none", affect_weight=2.0, affect_map=(weight, bias))(
        [batch], generator=torch.Generator().manual_seed(0)
    )
    # predicted (1, 0) against (0, 0.5): mean squared error (1 + 0.25) / 2
    assert weighted["affect"].item() == pytest.approx(0.625) and plain["affect"].item() == 0.0
    assert weighted["loss"].item() == pytest.approx(plain["loss"].item() + 2.0 * 0.625)
    with pytest.raises(ValueError, match="affect_map"):
        MERAlignLoss(affect_weight=1.0)


# ---------------------------------------------------------------- combined


def test_meralign_loss_hand_value_and_components():
    embeddings = torch.eye(3)
    labels = torch.tensor([[1, 0, 0], [0, 1, 0]])
    z = t([[1, 0, 0], [0, 0, 1]]).requires_grad_(True)
    clusters = torch.tensor([0, 1, 2])  # each label its own cluster: the two rows are in different clusters
    out = MERAlignLoss(alpha=2.5)([DatasetBatch(z, labels, embeddings, clusters)])
    # row 0: cos(z, e0) = 1, negative (e1+e2)/2 -> cos 0: loss 0
    # row 1: cos(z, e1) = 0, negative (e0+e2)/2 -> cos 1/sqrt(2): loss 1 + 1/sqrt(2)
    triplet = (1 + 1 / math.sqrt(2)) / 2
    assert out["objective"].item() == pytest.approx(triplet, abs=1e-6)
    assert out["regularizer"].item() == pytest.approx(1.0)  # orthogonal rows, different clusters
    assert out["loss"].item() == pytest.approx(triplet + 2.5, abs=1e-6)
    out["loss"].backward()
    assert torch.isfinite(z.grad).all()
    without = MERAlignLoss(alpha=2.5, regularizer="none")([DatasetBatch(z, labels, embeddings, clusters)])
    assert without["regularizer"].item() == 0.0 and without["loss"].item() == pytest.approx(triplet, abs=1e-6)
    with pytest.raises(ValueError, match="regularizer"):
        MERAlignLoss(regularizer="v3")
    with pytest.raises(ValueError, match="batches is empty"):
        MERAlignLoss()([])


def test_meralign_loss_contrastive_objective_sums_over_datasets():
    embeddings = torch.eye(3)
    first = DatasetBatch(t([[1, 0, 0]]), torch.tensor([[1, 0, 0]]), embeddings, torch.tensor([0, 1, 2]))
    second = DatasetBatch(t([[1, 0, 0]]), torch.tensor([[0, 1, 0]]), embeddings, torch.tensor([0, 1, 2]))
    out = MERAlignLoss(objective="contrastive", temperature=0.2, alpha=0.5)([first, second])
    expected = sum(label_contrastive_loss(b.z, b.label_matrix, b.targets, 0.2) for b in (first, second))
    assert out["objective"].item() == pytest.approx(expected.item())
    assert out["loss"].item() == pytest.approx(expected.item() + 0.5 * out["regularizer"].item())


def test_meralign_loss_sums_triplets_and_regularises_across_datasets():
    """Two datasets: the triplet terms add up, and the regulariser sees both datasets' rows in one batch (rows of
    different datasets in different clusters are pushed apart too)."""
    embeddings = torch.eye(3)
    first = DatasetBatch(t([[1, 0, 0]]), torch.tensor([[1, 0, 0]]), embeddings, torch.tensor([0, 1, 2]))
    second = DatasetBatch(t([[0, 1, 0]]), torch.tensor([[0, 1, 0]]), embeddings, torch.tensor([0, 1, 2]))
    loss = MERAlignLoss(alpha=1.0)
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    both = loss([first, second], generator=generator())
    one = loss([first], generator=generator())
    assert both["objective"].item() == pytest.approx(0.0)  # both rows sit on their positives
    # alone, a row has no other cluster to be pushed from; together, two orthogonal rows each give relu(1 + 0) = 1
    assert one["regularizer"].item() == 0.0 and both["regularizer"].item() == pytest.approx(1.0)
