"""Membrane-potential perturbation dynamics (MPPD) and the training modes built on it.

Ding, Pan, Liu, Yu & Huang, "Robust Stable Spiking Neural Networks", ICML 2024 (official code
DingJianhao/stable-snn). A perturbation of the input shifts the input current of a spiking layer
by ``δX[t] = X_clean[t] − X_pert[t]``; between spikes the membrane potential carries that shift
forward with the leak, so the perturbation of the potential follows the linear dynamics

    ε[t] = λ·ε[t−1] + δX[t],      ε[0] = 0,

and the layer is input-output stable: ``max_t ‖ε[t]‖ ≤ sqrt(1/(1−λ))·‖W‖₂·‖δS‖`` for a layer
``X = W·S`` (see :mod:`spikeshield.analysis.perturbation`). The MPPD regulariser keeps the
perturbation small in the *last* spiking layer: ``L = mean(ε²)`` (ℓ2, RSSNN) or ``mean(|ε|)``
(ℓ1, the total-variation form of the follow-up "MPPD-TV", ICLR 2026). X is taken at the
layer's input, before DLIF's gain p[t], and X_clean is detached so only the perturbed branch is
pushed towards the clean one.

:class:`MPPDTraining` is the base of the ``gaussian``, ``at`` and ``at-reg`` training modes:
each batch is trained on ``κ·CE(clean) + (1−κ)·CE(perturbed) + ρ·L``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.neurons import IFNode, SpikingNeuron
from spikeshield.neurons.lif import ExponentialLeak
from spikeshield.training.modes import TrainingMode

MPPD_NORMS = ("l2", "l1")


def perturbation_dynamics(delta: Tensor, decay: float) -> Tensor:
    """ε ``[T, B, ...]`` from input-current differences δX ``[T, B, ...]``: ``ε[t] = λ·ε[t−1] + δX[t]``."""
    eps = []
    state = torch.zeros_like(delta[0])
    for d in delta.unbind(0):
        state = decay * state + d
        eps.append(state)
    return torch.stack(eps)


def mppd_loss(x_clean: Tensor, x_pert: Tensor, decay: float, norm: str = "l2") -> Tensor:
    """The MPPD regulariser of one layer: ``mean(ε²)`` (``l2``) or ``mean(|ε|)`` (``l1``).

    Args:
        x_clean, x_pert: the layer's input currents ``[T, B, ...]`` on the clean and the
            perturbed batch; ``x_clean`` is detached here (no gradient reaches the clean branch).
        decay: the membrane leak λ of the layer (``H[t] = λ·V[t−1] + X[t]``).
        norm: ``l2`` or ``l1``.
    """
    eps = perturbation_dynamics(x_clean.detach().float() - x_pert.float(), decay)
    return eps.square().mean() if norm == "l2" else eps.abs().mean()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def spiking_layers(model: nn.Module) -> list[SpikingNeuron]:
    """The model's spiking layers in the order they are registered (for the built-in models: the
    order they run). Raises :class:`UsageError` if there is none."""
    layers = [m for m in unwrap(model).modules() if isinstance(m, SpikingNeuron)]
    if not layers:
        raise UsageError(f"{type(unwrap(model)).__name__} has no spiking layer (SpikingNeuron)")
    return layers


def membrane_decay(neuron: SpikingNeuron) -> float:
    """λ of the neuron's charge ``H = λ·V + X``: its ``decay`` (DLIF, ``lif`` with ``decay``),
    1 for IF, ``1 − 1/τ`` for the exponential leak; other neurons need an explicit value."""
    decay = getattr(neuron, "decay", None)
    if isinstance(decay, float):
        return decay
    if isinstance(neuron, IFNode):
        return 1.0
    if isinstance(neuron, ExponentialLeak):
        return 1.0 - float(torch.as_tensor(neuron.inv_tau).detach())  # PLIF's is learned
    raise UsageError(
        f"MPPD needs the membrane leak of neuron {neuron.name!r}, which has no multiplicative leak: "
        "give the training mode option decay=λ"
    )


@contextlib.contextmanager
def recorded_inputs(module: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every call of ``module`` appends its input tensor (first argument) to the
    yielded list; the hook is removed on exit."""
    seen: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


@dataclass
class MPPDTraining(TrainingMode):
    """Training on clean and perturbed batches with the MPPD regulariser (Ding et al., ICML 2024).

    Loss of a batch: ``κ·loss(clean) + (1−κ)·loss(perturbed) + ρ·L``, L the MPPD regulariser
    (:func:`mppd_loss`) of the last spiking layer; both forwards run in training mode. ``ρ = 0``
    is the same training without the regulariser (the paper's baseline). Subclasses (dataclasses
    too: their options are their fields) say how a batch is perturbed (:meth:`perturb`).

    Args:
        rho: ρ ≥ 0, the weight of the regulariser (1 in the paper).
        kappa: κ in [0, 1], the weight of the clean loss (0.5 in the paper).
        mppd: ``l2`` (mean ε², RSSNN) or ``l1`` (mean |ε|, MPPD-TV).
        decay: λ of the perturbation dynamics; default: the last spiking layer's own leak
            (:func:`membrane_decay`, 0.99 for DLIF).

    Raises:
        UsageError: ρ < 0, κ outside [0, 1], an unknown ``mppd``, or a decay outside (0, 1].
    """

    rho: float = 1.0
    kappa: float = 0.5
    mppd: str = "l2"
    decay: float | None = None

    def __post_init__(self) -> None:
        self.rho = validate.non_negative("rho", self.rho)
        self.kappa = validate.probability("kappa", self.kappa)
        if self.mppd not in MPPD_NORMS:
            raise UsageError(f"mppd must be one of {', '.join(MPPD_NORMS)}, got {self.mppd!r}")
        if self.decay is not None:
            self.decay = validate.in_range("decay", self.decay, 0.0, 1.0, low_open=True)

    def setup(self, model: nn.Module) -> None:
        """Checks, before the run folder is written, that the model has a spiking layer and,
        with the regulariser on and no ``decay`` given, that its last one has a leak λ."""
        last = spiking_layers(model)[-1]
        if self.rho and self.decay is None:
            membrane_decay(last)

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        """The perturbed batch (no gradient attached)."""
        raise NotImplementedError

    def batch_loss(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        x_pert = self.perturb(model, x, y, loss_fn).detach()
        last = spiking_layers(model)[-1]
        with recorded_inputs(last) if self.rho else contextlib.nullcontext([]) as currents:
            clean = model(x)
            pert = model(x_pert)
        loss = self.kappa * loss_fn(clean.float(), y) + (1 - self.kappa) * loss_fn(pert.float(), y)
        if self.rho:
            decay = self.decay if self.decay is not None else membrane_decay(last)
            loss = loss + self.rho * mppd_loss(currents[0], currents[1], decay, self.mppd)
        return clean, loss
