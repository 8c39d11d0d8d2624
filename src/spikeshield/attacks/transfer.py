"""Transfer attacks: craft adversarial inputs on a *source* model, apply them to the target.

The target is never differentiated (and never queried while crafting), so a defence that only
masks its own gradients gets no credit here. Natural sources: another trained SNN, or the
target's **ANN twin** — the same network and weights with every spiking neuron replaced by a
rate unit ``r = clamp(X / V_th, 0, 1)`` (the firing rate of a soft-reset IF neuron under
constant drive), run for one step. :func:`fit_twin` fine-tunes the twin briefly on the
training set so that its gradients point where the target's decisions are.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.attacks.base import Attack, build_attack, register_attack
from spikeshield.attacks.gradient import resolve_gradient
from spikeshield.attacks.oracle import Oracle
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import UsageError
from spikeshield.models.base import SpikingModel
from spikeshield.models.encoders import Encoder
from spikeshield.neurons import SpikingNeuron
from spikeshield.progress import Progress
from spikeshield.streams import SampleStreams


class RateUnit(nn.Module):
    """ANN stand-in for a spiking neuron on ``[T, B, ...]``: ``r = clamp(X / V_th, 0, 1)``."""

    def __init__(self, v_threshold: float = 1.0) -> None:
        super().__init__()
        self.v_threshold = float(v_threshold)

    def forward(self, x: Tensor) -> Tensor:
        return (x / self.v_threshold).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}"


def ann_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every spiking neuron replaced by a :class:`RateUnit`.

    Weights are copied (the twin starts as the rate approximation of the SNN). A
    :class:`SpikingModel` with direct or Poisson encoding runs its twin for one step on the
    image itself (the expected Poisson input); event inputs keep their time axis.
    """
    twin = copy.deepcopy(model)
    replaced = 0
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpikingNeuron):
                setattr(parent, name, RateUnit(child.v_threshold))
                replaced += 1
    if replaced == 0:
        raise UsageError(
            "the model has no spiking neurons: it has no ANN twin (use it as the source directly)"
        )
    if isinstance(twin, SpikingModel) and twin.encoder.kind in ("direct", "poisson"):
        twin.encoder = Encoder("direct", 1)
    return twin


def fit_twin(
    twin: nn.Module,
    dataset: ArrayDataset,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Fine-tune ``twin`` with Adam and cross-entropy on ``dataset``; returns what was done."""
    validate.int_at_least("twin epochs", epochs, 0)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=lr)
    start = time.perf_counter()
    correct = seen = 0
    twin.train()
    for epoch in range(epochs):
        correct = seen = 0
        bar = Progress(
            dataset.batches(batch_size, shuffle=True, generator=g, device=device),
            total=-(-len(dataset) // batch_size),
            desc=f"ANN twin epoch {epoch + 1}/{epochs}",
            enabled=progress,
            unit="batch",
        )
        for x, y in bar:
            out = twin(x)
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
    twin.eval()
    return {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "train_accuracy_last_epoch": correct / seen if seen else None,
        "seconds": time.perf_counter() - start,
    }


@register_attack("transfer")
@dataclass
class Transfer(Attack):
    """Transfer: a white-box attack (``base``) crafted on a source model, applied to the target."""

    base: str = "pgd"
    steps: int = 10
    source_gradient: str = "bptt"
    source_name: str = "unset"
    source: nn.Module | None = field(default=None, repr=False, compare=False, metadata={"record": False})

    kind: ClassVar[str] = "transfer"

    def validate(self) -> None:
        super().validate()
        self.steps = validate.int_at_least("transfer steps", self.steps, 1)
        resolve_gradient(self.source_gradient)
        self._base_attack(0.0)

    def _base_attack(self, eps: float) -> Attack:
        attack = build_attack(self.base, strict=False, eps=eps, norm=self.norm, steps=self.steps)
        if attack.kind != "white-box":
            raise UsageError(f"transfer needs a white-box base attack, got {self.base!r} ({attack.kind})")
        return attack

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        if self.source is None:
            raise UsageError("the transfer attack needs a source model (an ANN twin or another run)")
        gradient = resolve_gradient(self.source_gradient, self.source)
        if len(gradient.members) != 1:
            raise UsageError("transfer: the source gradient must be a single mode, not adaptive")
        source_oracle = Oracle(self.source, gradient.members[0], oracle.eot_samples, oracle.bounds)
        return self._base_attack(self.eps).perturb(source_oracle, x, y, rng)

    def derived_settings(self) -> dict[str, Any]:
        base = self._base_attack(self.eps).settings()
        return {"step_size": base.get("step_size"), "random_start": base.get("random_start", False)}
