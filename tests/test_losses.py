"""Triplet losses against slow, obviously correct loops, against pytorch-metric-learning, and by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer

from reid.losses import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    SoftMarginTripletLoss,
    TripletStats,
    batch_all_triplet_loss,
    batch_hard_soft_margin_loss,
    batch_hard_triplet_loss,
)
from reid.retrieval.distances import euclidean_distances

MARGIN = 0.5
LABELS = {
    "p4xk3": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    # uneven class counts, shuffled, and two singletons (anchors 2 and 9 have no positive)
    "uneven": [3, 0, 5, 0, 1, 3, 0, 1, 1, 4, 1, 0, 3],
    "few_valid": [0, 1, 2, 0, 3, 4, 5],
}
LOSSES = {
    "hard": lambda e, y: batch_hard_triplet_loss(e, y, MARGIN, return_stats=True),
    "soft": lambda e, y: batch_hard_soft_margin_loss(e, y, return_stats=True),
    "all": lambda e, y: batch_all_triplet_loss(e, y, MARGIN, return_stats=True),
}


def random_batch(labels: list[int], dim: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, ...]:
    """(B, dim) leaf embeddings with gradients and (B,) int64 labels."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(len(labels), dim, generator=generator, dtype=dtype).requires_grad_()
    return embeddings, torch.tensor(labels)


def value_and_grad(loss_fn, embeddings, labels) -> tuple[torch.Tensor, torch.Tensor, TripletStats]:
    """Loss, d loss / d embeddings (B, D) and stats of `loss_fn(embeddings, labels) -> (loss, stats)`."""
    loss, stats = loss_fn(embeddings, labels)
    (grad,) = torch.autograd.grad(loss, embeddings)
    return loss.detach(), grad, stats


def reference(kind: str, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, TripletStats]:
    """The loss of `kind` by Python loops over anchors and triplets, on distances computed pair by pair."""
    y = labels.tolist()
    B = len(y)
    d = [[torch.linalg.vector_norm(embeddings[i] - embeddings[j]) for j in range(B)] for i in range(B)]
    terms, active, hardest_pos, hardest_neg = [], [], [], []
    for a in range(B):
        pos = [p for p in range(B) if p != a and y[p] == y[a]]
        neg = [n for n in range(B) if y[n] != y[a]]
        if not pos or not neg:
            continue
        d_ap, d_an = max(d[a][p] for p in pos), min(d[a][n] for n in neg)
        hardest_pos.append(d_ap)
        hardest_neg.append(d_an)
        if kind == "hard":
            terms.append(F.relu(d_ap - d_an + MARGIN))
            active.append(terms[-1] > 0)
        elif kind == "soft":
            terms.append(F.softplus(d_ap - d_an))
            active.append(d_ap > d_an)
        else:
            for p in pos:
                for n in neg:
                    terms.append(F.relu(d[a][p] - d[a][n] + MARGIN))
                    active.append(terms[-1] > 0)
    if not terms:
        zero = torch.zeros((), dtype=embeddings.dtype)
        return (embeddings * 0).sum(), TripletStats(zero, zero, zero)
    terms = torch.stack(terms)
    loss = terms[terms > 0].mean() if kind == "all" and (terms > 0).any() else terms.mean()
    mean = lambda xs: torch.stack(xs).detach().to(embeddings.dtype).mean()  # noqa: E731
    return loss, TripletStats(mean(active), mean(hardest_pos), mean(hardest_neg))


def pml_batch_hard(embeddings, labels):
    """PML's batch hard on unnormalised Euclidean distances (its default LpDistance L2-normalises first)."""
    distance = LpDistance(normalize_embeddings=False)
    loss = TripletMarginLoss(MARGIN, distance=distance, reducer=MeanReducer())
    return loss(embeddings, labels, BatchHardMiner(distance=distance)(embeddings, labels)), None


def pml_batch_all(embeddings, labels):
    """PML's all-triplets loss with its default AvgNonZeroReducer (mean over the non-zero terms)."""
    loss = TripletMarginLoss(MARGIN, distance=LpDistance(normalize_embeddings=False))
    return loss(embeddings, labels), None


def assert_stats_close(actual: TripletStats, expected: TripletStats) -> None:
    for name in ("active_fraction", "hardest_pos", "hardest_neg"):
        value = getattr(actual, name)
        assert value.dim() == 0 and not value.requires_grad, name
        torch.testing.assert_close(value, getattr(expected, name), msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("labels", LABELS.values(), ids=LABELS.keys())
@pytest.mark.parametrize("kind", LOSSES)
def test_matches_loop_reference(kind, labels, seed):
    embeddings, labels = random_batch(labels, dim=5, seed=seed)
    loss, grad, stats = value_and_grad(LOSSES[kind], embeddings, labels)
    expected = value_and_grad(lambda e, y: reference(kind, e, y), embeddings, labels)
    expected_loss, expected_grad, expected_stats = expected
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)
    assert_stats_close(stats, expected_stats)


@pytest.mark.parametrize("kind", LOSSES)
def test_float32_matches_float64_reference(kind):
    embeddings, labels = random_batch(LABELS["uneven"], dim=16, seed=3, dtype=torch.float32)
    loss, grad, _ = value_and_grad(LOSSES[kind], embeddings, labels)
    double = embeddings.detach().double().requires_grad_()
    expected_loss, expected_grad, _ = value_and_grad(lambda e, y: reference(kind, e, y), double, labels)
    torch.testing.assert_close(loss, expected_loss.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad.float(), rtol=1e-4, atol=1e-5)


# PML's BatchHardMiner keeps only anchors that have both a positive and a negative (like ours) and MeanReducer
# averages over them; TripletMarginLoss without a miner takes every valid triplet and AvgNonZeroReducer
# averages the non-zero terms (zero if none): the paper's BA≠0, our batch all. So values and gradients agree.
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("labels", LABELS.values(), ids=LABELS.keys())
@pytest.mark.parametrize(("kind", "pml_loss"), [("hard", pml_batch_hard), ("all", pml_batch_all)])
def test_matches_pytorch_metric_learning(kind, pml_loss, labels, seed):
    embeddings, labels = random_batch(labels, dim=8, seed=seed)
    loss, grad, _ = value_and_grad(LOSSES[kind], embeddings, labels)
    expected_loss, expected_grad, _ = value_and_grad(pml_loss, embeddings, labels)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)


def test_points_on_a_line_by_hand():
    # x:      0   2   3   7   10      margin 1
    # label:  A   A   B   B   C       C has no positive: anchor 4 is left out
    # anchor  hardest p (d_ap)  hardest n (d_an)  hinge d_ap - d_an + 1   batch-all terms over n (p fixed)
    # 0 (0)   2 (2)             3 (3)             0                       (3, 7, 10) -> 0, 0, 0
    # 1 (2)   0 (2)             3 (1)             2                       (3, 7, 10) -> 2, 0, 0
    # 2 (3)   7 (4)             2 (1)             4                       (0, 2, 10) -> 2, 4, 0
    # 3 (7)   3 (4)             10 (3)            2                       (0, 2, 10) -> 0, 0, 2
    # batch hard: loss (0 + 2 + 4 + 2) / 4 = 2, active 3/4, hardest_pos (2+2+4+4)/4 = 3, hardest_neg
    # (3+1+1+3)/4 = 2. Gradient, summing d/dx of d_ap - d_an over the active anchors 1, 2, 3 and dividing
    # by 4: anchor 1 gives x1 +2, x0 -1, x2 -1; anchor 2 gives x2 -2, x3 +1, x1 +1; anchor 3 gives x3 +2,
    # x2 -1, x4 -1; so [-1, 3, -4, 3, -1] / 4.
    # soft margin: mean of softplus(d_ap - d_an) = softplus(-1, 1, 3, 1); active (d_ap > d_an) 3/4.
    # batch all: 12 valid triplets, non-zero terms 2, 2, 4, 2: loss 10 / 4 = 2.5, active 4/12.
    embeddings = torch.tensor([[0.0], [2.0], [3.0], [7.0], [10.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2])
    loss, stats = batch_hard_triplet_loss(embeddings, labels, margin=1.0, return_stats=True)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(2.0))
    torch.testing.assert_close(embeddings.grad, torch.tensor([[-1.0], [3.0], [-4.0], [3.0], [-1.0]]) / 4)
    assert_stats_close(stats, TripletStats(torch.tensor(0.75), torch.tensor(3.0), torch.tensor(2.0)))

    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    loss, stats = batch_hard_soft_margin_loss(embeddings, labels, return_stats=True)
    torch.testing.assert_close(loss, torch.tensor((softplus(-1) + 2 * softplus(1) + softplus(3)) / 4))
    assert_stats_close(stats, TripletStats(torch.tensor(0.75), torch.tensor(3.0), torch.tensor(2.0)))

    loss, stats = batch_all_triplet_loss(embeddings, labels, margin=1.0, return_stats=True)
    torch.testing.assert_close(loss, torch.tensor(2.5))
    assert_stats_close(stats, TripletStats(torch.tensor(1 / 3), torch.tensor(3.0), torch.tensor(2.0)))


@pytest.mark.parametrize("kind", LOSSES)
def test_coincident_embeddings_give_finite_gradients(kind):
    labels = torch.tensor(LABELS["p4xk3"])
    same = torch.ones(len(labels), 3, requires_grad=True)
    loss, grad, _ = value_and_grad(LOSSES[kind], same, labels)
    assert torch.isfinite(grad).all()
    expected = {"hard": MARGIN, "soft": math.log(2), "all": MARGIN}[kind]  # every d is 0
    torch.testing.assert_close(loss, torch.tensor(expected))

    embeddings, _ = random_batch(LABELS["p4xk3"], dim=3, seed=0, dtype=torch.float32)
    duplicated = embeddings[[0, 0, 1, 4, 4, 5, 6, 0, 8, 9, 10, 1]]  # copies within a class and across classes
    loss, grad, _ = value_and_grad(LOSSES[kind], duplicated, labels)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("labels", [[7] * 6, [0, 1, 2, 3]], ids=["single_class", "no_positives"])
@pytest.mark.parametrize("kind", LOSSES)
def test_nothing_valid_gives_a_zero_that_backpropagates(kind, labels):
    embeddings, labels = random_batch(labels, dim=4, seed=0, dtype=torch.float32)
    loss, stats = LOSSES[kind](embeddings, labels)
    assert loss.requires_grad
    loss.backward()
    assert loss.item() == 0 and torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    zero = torch.tensor(0.0)
    assert_stats_close(stats, TripletStats(zero, zero, zero))


@pytest.mark.parametrize("kind", LOSSES)
def test_labels_are_compared_exactly(kind):
    # 2**40 + k are distinct int64 labels that float32 rounds to the same number: a mask built from
    # float32 labels would merge the classes
    embeddings, labels = random_batch(LABELS["uneven"], dim=5, seed=4)
    large = labels + 2**40
    assert len(torch.unique(large.float())) < len(torch.unique(large))
    loss, grad, stats = value_and_grad(LOSSES[kind], embeddings, large)
    expected_loss, expected_grad, expected_stats = value_and_grad(
        lambda e, y: reference(kind, e, y), embeddings, labels
    )
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)
    assert_stats_close(stats, expected_stats)


@pytest.mark.parametrize("kind", LOSSES)
def test_backward_scales_by_the_upstream_gradient(kind):
    embeddings, labels = random_batch(LABELS["uneven"], dim=3, seed=5)
    _, grad, _ = value_and_grad(LOSSES[kind], embeddings, labels)
    loss, _ = LOSSES[kind](embeddings, labels)
    (scaled,) = torch.autograd.grad(loss, embeddings, grad_outputs=torch.tensor(-2.5, dtype=torch.float64))
    torch.testing.assert_close(scaled, -2.5 * grad)


@pytest.mark.parametrize("kind", LOSSES)
def test_gradients_match_finite_differences_to_second_order(kind):
    # plain autograd throughout: first and second derivatives exist and agree with finite differences
    embeddings, labels = random_batch(LABELS["uneven"], dim=3, seed=6)
    loss = lambda e: LOSSES[kind](e, labels)[0]  # noqa: E731
    assert torch.autograd.gradcheck(loss, (embeddings,))
    assert torch.autograd.gradgradcheck(loss, (embeddings,))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("kind", "pml_loss"), [("hard", pml_batch_hard), ("all", pml_batch_all)])
def test_larger_pk_batch_matches_pytorch_metric_learning(kind, pml_loss, seed):
    # 40 identities x 6 in a shuffled order, float32 as in training
    order = torch.randperm(240, generator=torch.Generator().manual_seed(seed))
    embeddings, labels = random_batch(
        torch.arange(40).repeat_interleave(6)[order].tolist(), 32, seed, torch.float32
    )
    loss, grad, _ = value_and_grad(LOSSES[kind], embeddings, labels)
    expected_loss, expected_grad, _ = value_and_grad(pml_loss, embeddings, labels)
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_distance_matches_cdist(dtype):
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    # cdist's own matmul path leaves about 1e-3 on the diagonal in float32: compare with its exact path
    expected = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(euclidean_distances(x), expected, **tol)
    torch.testing.assert_close(euclidean_distances(x, squared=True), expected**2, **tol)
    assert (euclidean_distances(x).diagonal() == 0).all()


def test_pairwise_distance_gradient_is_finite_on_coincident_rows():
    x = torch.randn(6, 3).repeat(2, 1).requires_grad_()
    euclidean_distances(x).sum().backward()
    assert torch.isfinite(x.grad).all()


MODULES = [
    (BatchHardTripletLoss(MARGIN), "hard"),
    (SoftMarginTripletLoss(), "soft"),
    (BatchAllTripletLoss(MARGIN), "all"),
]


@pytest.mark.parametrize(("module", "kind"), MODULES)
def test_modules_wrap_the_functions(module, kind):
    embeddings, labels = random_batch(LABELS["uneven"], dim=4, seed=0)
    loss, stats = module(embeddings, labels)
    expected_loss, expected_stats = LOSSES[kind](embeddings, labels)
    torch.testing.assert_close(loss, expected_loss)
    assert_stats_close(stats, expected_stats)
