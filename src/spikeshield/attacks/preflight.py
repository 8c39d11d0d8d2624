"""Before attacking: the input gradient must be non-zero and finite.

Users of other SNN libraries have reported robustness that was not there because, in eval mode,
no gradient reached the input (a detached state, a surrogate switched off, a non-differentiable
encoder): every white-box attack then stays at its random start and the model looks robust. A
zero or non-finite input gradient is therefore an error here, naming the layer where the gradient
is lost, never a result. :func:`assert_input_gradient` takes the gradient of the cross-entropy
w.r.t. the input on one batch, in the evaluation's mode, under the attacker's gradient, and
follows it back through the model's leaf layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from spikeshield.attacks.gradient import GradientSpec
from spikeshield.attacks.oracle import Oracle, cross_entropy_loss
from spikeshield.errors import SpikeshieldError
from spikeshield.streams import SampleStreams


class InputGradientError(SpikeshieldError):
    """The gradient of the loss w.r.t. the input is zero everywhere, or not finite."""


@dataclass
class _Call:
    """One call of a leaf layer: how its output's and its input's gradients looked."""

    name: str
    kind: str
    grad_out: list[Tensor] = field(default_factory=list)
    grad_in: list[Tensor] = field(default_factory=list)

    @staticmethod
    def _state(grads: list[Tensor]) -> str:
        """``none`` (no gradient arrived), ``zero``, ``nonfinite`` or ``ok``."""
        if not grads:
            return "none"
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            return "nonfinite"
        return "ok" if any(bool((g != 0).any()) for g in grads) else "zero"

    @property
    def out_state(self) -> str:
        return self._state(self.grad_out)

    @property
    def in_state(self) -> str:
        return self._state(self.grad_in)


def _hooks(model: nn.Module, calls: list[_Call]) -> list[torch.utils.hooks.RemovableHandle]:
    """Forward hooks on every leaf layer recording its input's and output's gradients."""

    def make(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            call = _Call(name, type(module).__name__)
            calls.append(call)
            if isinstance(output, Tensor) and output.requires_grad:
                output.register_hook(lambda g: call.grad_out.append(g.detach()))
            first = next((t for t in inputs if isinstance(t, Tensor) and t.requires_grad), None)
            if first is not None:
                first.register_hook(lambda g: call.grad_in.append(g.detach()))

        return hook

    return [
        m.register_forward_hook(make(name or type(m).__name__))
        for name, m in model.named_modules()
        if not any(True for _ in m.children())
    ]


def _where(calls: list[_Call], bad: str) -> str:
    """Where the gradient turns ``bad`` (zero or non-finite), going back from the output: the
    last layer whose output receives a usable gradient while what reaches its input (its input's
    gradient, or if that was not seen, e.g. through a fused kernel, the previous layer's output's)
    is ``bad`` (for zero: or nothing at all)."""
    lost = {bad, "none"} if bad == "zero" else {bad}
    for i in range(len(calls) - 1, -1, -1):
        call = calls[i]
        if call.out_state != "ok":
            continue
        passed = call.in_state if call.in_state != "none" or i == 0 else calls[i - 1].out_state
        if passed in lost:
            what = "no gradient" if bad == "zero" else "a non-finite gradient"
            return f"at layer {call.name!r} ({call.kind}): its output receives a gradient, its input {what}"
    if calls and calls[-1].out_state != "ok":
        return f"at the loss: the model's last layer ({calls[-1].name!r}) receives no usable gradient"
    first = next((c for c in calls if c.in_state == "ok"), None)
    if first is not None:
        return (
            f"before layer {first.name!r} ({first.kind}), whose input still receives a gradient: something "
            "outside the layers (a detach, a non-differentiable operation in a forward function) stops it"
        )
    return "inside the model (no layer's input receives a gradient)"


def assert_input_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    gradient: GradientSpec,
    *,
    eot_samples: int = 1,
    bounds: tuple[float, float] = (0.0, 1.0),
    streams: SampleStreams | None = None,
) -> None:
    """Raise :class:`InputGradientError` unless ∂CE/∂x is finite and not zero everywhere.

    Args:
        model: in the mode it will be attacked in (eval); left exactly as it was.
        x, y: one batch ``[B, ...]`` and its labels.
        gradient: the attacker's gradient (an ASSG member needs a fixed A).

    Individual samples may have a zero gradient (a saturated, confidently classified input);
    the whole batch may not.
    """
    calls: list[_Call] = []
    handles = _hooks(model, calls)
    try:
        oracle = Oracle(model, gradient, eot_samples, bounds)
        oracle.new_run()
        _, grad, _ = oracle.loss_and_grad(x, y, cross_entropy_loss, streams)
    finally:
        for h in handles:
            h.remove()
    where = f"on a batch of {len(x)} samples in eval mode, attacker gradient {gradient.name!r}"
    if not bool(torch.isfinite(grad).all()):
        raise InputGradientError(
            f"the gradient of the loss w.r.t. the input is not finite {where}: it turns non-finite "
            f"{_where(calls, 'nonfinite')}"
        )
    if not bool((grad != 0).any()):
        raise InputGradientError(
            f"the gradient of the loss w.r.t. the input is zero for every sample {where}: it vanishes "
            f"{_where(calls, 'zero')}. A white-box attack would measure nothing; use another attacker "
            "gradient (--gradient surrogate:sigmoid:1, bptr, assg, or true for a fake-gradient model)"
        )
