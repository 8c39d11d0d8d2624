"""SA-PGD, stability-aware PGD (Wang et al., arXiv 2512.22522): schedule, update rule, result."""

import pytest
import torch
from torch import nn

from spikeshield.attacks import Oracle, build_attack
from spikeshield.attacks.base import random_start
from spikeshield.attacks.sapgd import sapgd_halvings, sapgd_step_sizes
from spikeshield.streams import SampleStreams


def _official_halvings(steps: int) -> list[int]:
    """The official code's loop (attack.py, SAPGD.attack_single_run), replayed: a counter of
    steps since the last halving, compared with k, which starts at ⌊0.22N⌋ and shrinks by
    ⌊0.03N⌋ per halving down to ⌊0.06N⌋ (each at least 1)."""
    k = max(int(0.22 * steps), 1)
    steps_min, size_decr = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    counter, out = 0, []
    for i in range(steps):
        counter += 1
        if counter == k:
            out.append(i + 1)
            counter = 0
            k = max(k - size_decr, steps_min)
    return out


def test_the_step_schedule_for_100_steps_is_the_papers():
    assert sapgd_halvings(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    eta = sapgd_step_sizes(8 / 255, 100)
    assert eta[:22] == [8 / 255] * 22 and eta[22] == 4 / 255 and eta[41] == 2 / 255
    assert eta[99] == 8 / 255 / 2**8


@pytest.mark.parametrize("steps", [1, 3, 10, 20, 50, 137, 200, 1000])
def test_the_schedule_for_other_step_counts_is_the_official_codes_rule(steps):
    assert sapgd_halvings(steps) == _official_halvings(steps)
    assert len(sapgd_step_sizes(0.1, steps)) == steps


class Scripted(Oracle):
    """Gradients, losses and scores from a script (one entry per query)."""

    def __init__(self, grads, losses, wrong) -> None:
        super().__init__(nn.Identity())
        self.script = list(zip(grads, losses, wrong, strict=True))
        self.queries: list[torch.Tensor] = []

    def loss_and_grad(self, x, y, loss, rng=None):
        grad, value, wrong = self.script[len(self.queries)]
        self.queries.append(x.clone())
        scores = torch.tensor([[0.0, 1.0] if wrong else [1.0, 0.0]])
        return torch.tensor([value]), grad.view_as(x).clone(), scores


GRADS = [
    torch.tensor([1.0, -2.0, 0.5, 4.0]),
    torch.tensor([-1.0, 1.0, 3.0, 0.1]),
    torch.tensor([2.0, 2.0, -0.5, 0.2]),
    torch.tensor([0.3, -1.0, 1.0, 1.0]),
]


def _by_hand(x: torch.Tensor, eps: float, steps: int) -> list[torch.Tensor]:
    """The iterates of the module docstring's update, written out."""
    point = random_start(x, eps, "linf", SampleStreams.keyed(0, [0]), Oracle(nn.Identity()))
    points, m, v = [point], None, None
    for k, eta in enumerate([eps, eps / 2, eps / 4][:steps]):
        g = GRADS[k].view_as(x)
        g1 = g / g.abs().mean()
        g2 = g1**2 / (g1**2).mean()
        m = g1 if m is None else 0.5 * m + g1
        v = g2 if v is None else 0.8 * v + g2
        step = (eta * m / (v.sqrt() + 1e-12)).clamp(-eta, eta)
        point = torch.min(torch.max(point + step, x - eps), x + eps).clamp(0, 1)
        points.append(point)
    return points


def test_the_update_rule_step_by_step():
    """Normalised first and second moments, the step capped at η per coordinate, η halving
    (3 steps: after each step), projection; the result is the point of highest loss."""
    x, y, eps = torch.full((1, 4), 0.5), torch.zeros(1, dtype=torch.long), 0.2
    expected = _by_hand(x, eps, 3)
    assert not torch.equal((expected[2] - expected[1]).abs(), torch.full((1, 4), eps / 2))  # not just sign
    oracle = Scripted(GRADS, losses=[0.1, 0.5, 0.3, 0.2], wrong=[False] * 4)
    out = build_attack("sa-pgd", eps=eps, steps=3).perturb(oracle, x, y, SampleStreams.keyed(0, [0]))
    for got, want in zip(oracle.queries, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-7)
    torch.testing.assert_close(out, expected[1], rtol=0, atol=1e-7)  # the highest loss, 0.5


def test_the_first_misclassified_point_is_kept_and_never_queried_again():
    x, y, eps = torch.full((1, 4), 0.5), torch.zeros(1, dtype=torch.long), 0.2
    expected = _by_hand(x, eps, 3)
    oracle = Scripted(GRADS, losses=[0.1, 0.2, 0.3, 0.4], wrong=[False, False, True, False])
    out = build_attack("sa-pgd", eps=eps, steps=3).perturb(oracle, x, y, SampleStreams.keyed(0, [0]))
    assert len(oracle.queries) == 3  # fooled at the second step: no third query
    torch.testing.assert_close(out, expected[2], rtol=0, atol=1e-7)


def test_sa_pgd_breaks_the_undefended_digits_model(digits_lif, digits_test):
    x, y = digits_test.subset(64).tensors()
    oracle = Oracle(digits_lif)
    adv = build_attack("sa-pgd", eps=0.3, steps=20).perturb(oracle, x, y, torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert (digits_lif(adv).argmax(1) == y).float().mean() < 0.05
