"""The attacker's access to a model: scores, losses and input gradients.

White-box attacks ask the :class:`Oracle` for ``loss_and_grad``; black-box attacks only for
``scores``. The oracle applies the chosen attacker gradient (:mod:`spikeshield.attacks.gradient`)
around each gradient call, averages over ``eot_samples`` forward/backward passes for stochastic
models (expectation over transformation, Athalye et al. 2018), clips to the input box, and counts
the model calls it makes. It keeps no graph between calls: each gradient call builds one batch's
graph and frees it before returning.

Every query takes the random streams of the samples it asks about (``rng``, one per sample, see
:mod:`spikeshield.streams`): a stochastic model then draws each sample's noise from that
sample's stream, so EOT averages do not depend on the batch. Every query runs inside
:func:`~spikeshield.preserve.preserved`: the model is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.attacks.assg import SharpnessStatistics
from spikeshield.attacks.gradient import BPTT, GradientSpec, attacker_gradient
from spikeshield.errors import UsageError
from spikeshield.preserve import preserved
from spikeshield.streams import SampleStreams, sample_streams

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy (the attacker maximises it)."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein, ICML 2020), to be maximised::

        DLR(z, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)

    with z_π1 ≥ z_π2 ≥ … the sorted scores. Invariant to shifting and rescaling the scores,
    which matters for spiking readouts whose scores are firing rates.
    """
    z = logits.float()
    if z.shape[1] < 3:
        raise UsageError("the DLR loss needs at least 3 classes")
    ordered = z.sort(dim=1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return -(z_y - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """``z_y − max_{i≠y} z_i``: positive while the sample is classified correctly (minimised)."""
    z = logits.float()
    z_y = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return z_y - other


LOSSES: dict[str, LossFn] = {"ce": cross_entropy_loss, "dlr": dlr_loss}


def loss_function(name: str) -> LossFn:
    if name not in LOSSES:
        raise UsageError(f"unknown attack loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name]


class Oracle:
    """Queries and gradients of ``model`` as the attacker sees them.

    Args:
        model: any module mapping inputs to class scores ``[B, classes]``.
        gradient: the attacker gradient used by :meth:`loss_and_grad` (default BPTT).
        eot_samples: forward/backward passes averaged per query (1 for deterministic models).
        bounds: the valid input box (default [0, 1]); ``upper = inf`` for unbounded inputs.
    """

    def __init__(
        self,
        model: nn.Module,
        gradient: GradientSpec = BPTT,
        eot_samples: int = 1,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        validate.positive_int("EOT samples", eot_samples)
        low, high = bounds
        if not low < high:
            raise UsageError(f"input bounds must satisfy low < high, got {bounds}")
        self.model = model
        self.gradient = gradient
        self.eot_samples = eot_samples
        self.bounds = (float(low), float(high))
        self.forward_calls = 0
        self.gradient_calls = 0
        #: ASSG's running statistics for the current attack run (None without ASSG)
        self.sharpness = SharpnessStatistics() if gradient.assg is not None else None
        self._rows: dict[int, int] = {}

    def new_run(self) -> None:
        """A new attack run (or restart) begins: ASSG's statistics start afresh."""
        if self.sharpness is not None:
            self.sharpness.reset()
        self._rows = {}

    def _run_rows(self, rng: SampleStreams | None, n: int, device: torch.device) -> Tensor | None:
        """The rows of the run's samples a query asks about (None: all, in order).

        A sample is known by its random stream: the run's first query numbers them; a later
        query may ask about any subset (an attack that stops querying fooled samples).
        """
        if rng is None:
            return None
        keys = [id(g) for g in rng.generators]
        if not self._rows:
            self._rows = {k: i for i, k in enumerate(keys)}
            return None
        try:
            rows = [self._rows[k] for k in keys]
        except KeyError:
            raise RuntimeError("a query asked about a sample its attack run did not start with") from None
        if rows == list(range(len(self._rows))):
            return None
        return torch.tensor(rows, device=device)

    def clip(self, x: Tensor) -> Tensor:
        low, high = self.bounds
        return x.clamp(low, high) if high != float("inf") else x.clamp(min=low)

    @torch.no_grad()
    def scores(self, x: Tensor, rng: SampleStreams | None = None) -> Tensor:
        """Class scores of the true forward, averaged over ``eot_samples`` passes (no graph)."""
        total = None
        with preserved(self.model), sample_streams(rng):
            for _ in range(self.eot_samples):
                out = self.model(x).float()
                total = out if total is None else total + out
        self.forward_calls += self.eot_samples * len(x)
        assert total is not None
        return total / self.eot_samples

    def loss_and_grad(
        self, x: Tensor, y: Tensor, loss: LossFn, rng: SampleStreams | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss, its gradient w.r.t. ``x`` and the scores, under the attacker gradient.

        The gradient is of the summed per-sample losses, so each sample's gradient does not
        depend on the batch size. Scores and loss are averaged over the EOT passes. Under ASSG
        each call is one attack iteration: the first EOT pass updates the statistics.
        """
        grad_sum = torch.zeros_like(x)
        loss_sum = torch.zeros(len(x), device=x.device)
        score_sum: Tensor | None = None
        with (
            preserved(self.model),
            sample_streams(rng),
            attacker_gradient(self.model, self.gradient, self.sharpness),
        ):
            rows = self._run_rows(rng, len(x), x.device) if self.sharpness is not None else None
            for k in range(self.eot_samples):
                if self.sharpness is not None:
                    self.sharpness.begin_pass(update=k == 0, rows=rows)
                x_var = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    out = self.model(x_var)
                    losses = loss(out, y)
                    (grad,) = torch.autograd.grad(losses.sum(), x_var, allow_unused=True)
                if grad is not None:  # None: the scores do not depend on the input at all
                    grad_sum += grad
                loss_sum += losses.detach()
                score_sum = out.detach().float() if score_sum is None else score_sum + out.detach().float()
        self.gradient_calls += self.eot_samples * len(x)
        assert score_sum is not None
        n = self.eot_samples
        return loss_sum / n, grad_sum / n, score_sum / n
