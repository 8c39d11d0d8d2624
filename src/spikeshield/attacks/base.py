"""The attack registry, the :class:`Attack` base class and the geometry shared by attacks.

An attack is a dataclass of its settings (all recorded with every result) with one method,
:meth:`Attack.perturb`, mapping clean inputs and labels to adversarial inputs through an
:class:`~spikeshield.attacks.oracle.Oracle`. A new attack is one file::

    @register_attack("my-attack")
    @dataclass
    class MyAttack(Attack):
        steps: int = 10
        def perturb_once(self, oracle, x, y, rng): ...

``rng`` holds one random stream per sample (:class:`~spikeshield.streams.SampleStreams`):
every random draw an attack makes is ``rng.uniform(...)`` / ``rng.normal(...)`` (row i from
sample i's stream), and every oracle query passes the streams of the samples it asks about
(``oracle.scores(x[active], rng[active])``), so that a sample's adversarial input never depends
on its batch mates. ``perturb`` runs inside :func:`~spikeshield.preserve.preserved`: the model
is left exactly as it was, also when the attack raises.

Threat model: inputs live in the oracle's box (default [0, 1]); a perturbation δ is bounded by
``‖δ‖∞ ≤ ε`` (``linf``) or ``‖δ‖₂ ≤ ε`` per sample (``l2``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.oracle import LossFn, Oracle
from spikeshield.errors import UsageError
from spikeshield.preserve import preserved
from spikeshield.registry import Registry
from spikeshield.streams import SampleStreams

RandomSource = SampleStreams | torch.Generator | None
Attempt = Callable[[Tensor, Tensor, SampleStreams], Tensor]

NORMS = ("linf", "l2")
KINDS = ("white-box", "black-box", "transfer", "ensemble")

A = TypeVar("A", bound=type["Attack"])
ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str) -> Callable[[A], A]:
    """Class decorator: register an :class:`Attack` dataclass under ``name``."""

    def decorator(cls: A) -> A:
        cls.name = name
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        if cls.preset:
            doc += " (" + ", ".join(f"{k}={v}" for k, v in cls.preset.items()) + ")"
        ATTACKS.register(name, help=doc)(cls)
        return cls

    return decorator


# ---------------------------------------------------------------------------- geometry
def per_sample_norm(v: Tensor) -> Tensor:
    """‖v_i‖₂ for each sample, shaped to broadcast against ``v``."""
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample vector ``[B]`` shaped to broadcast against ``like`` ``[B, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def ascent_direction(grad: Tensor, norm: str) -> Tensor:
    """The steepest-ascent unit step: sign(g) for L∞, g/‖g‖₂ for L2."""
    if norm == "linf":
        return grad.sign()
    # no additive epsilon: per-sample gradients of confidently classified samples can have
    # norms ~1e-9, which an epsilon of 1e-10 would already shorten by 10 %
    return grad / per_sample_norm(grad).clamp_min(torch.finfo(grad.dtype).tiny)


def project(x_adv: Tensor, x: Tensor, eps: float | Tensor, norm: str, oracle: Oracle) -> Tensor:
    """Project ``x_adv`` onto the ε-ball around ``x``, then onto the input box."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.clamp(delta, min=-eps, max=eps) if isinstance(eps, float) else delta.clamp(-eps, eps)
    else:
        length = per_sample_norm(delta)
        delta = delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)
    return oracle.clip(x + delta)


def random_start(x: Tensor, eps: float, norm: str, rng: SampleStreams, oracle: Oracle) -> Tensor:
    """A random point of the ε-ball (clipped to the box), each sample's from its own stream.

    L∞: δ ~ U(−ε, ε) per element. L2: a Gaussian direction scaled to a radius U(0, 1)·ε.
    (Random numbers are drawn on the CPU, so runs reproduce across devices.)
    """
    shape = x.shape[1:]
    if norm == "linf":
        delta = (2.0 * rng.uniform(shape, dtype=x.dtype) - 1.0) * eps
    else:

        def ball(g: torch.Generator, _i: int) -> Tensor:
            direction = torch.randn(shape, generator=g, dtype=x.dtype)
            radius = torch.rand((), generator=g, dtype=x.dtype)
            return direction * (radius / direction.norm().clamp_min(1e-12) * eps)

        delta = rng.draw(ball, shape)
    return oracle.clip(x + delta.to(x.device))


def first_success(
    oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams, attempts: Iterable[Attempt]
) -> Tensor:
    """Run ``attempts`` in turn, each only on the samples no earlier attempt fooled; keep, per
    sample, the first adversarial input that fools the model (else the last one tried)."""
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for attempt in attempts:
        idx = (~fooled).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        candidate = attempt(x[idx], y[idx], rng[idx])
        best[idx] = candidate
        fooled[idx[oracle.scores(candidate, rng[idx]).argmax(1) != y[idx]]] = True
    return best


def query_active(
    oracle: Oracle,
    x: Tensor,
    y: Tensor,
    loss: LossFn,
    rng: SampleStreams,
    active: Tensor,
    previous: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """``oracle.loss_and_grad`` on the samples ``active`` (a bool mask) only.

    For attacks that keep, per sample, the first misclassified point: once a sample is fooled
    nothing it does later matters, so it is no longer queried — its query count and its
    result then depend on itself alone, not on when its batch mates fall. The other samples
    keep ``previous`` (loss, gradient). Returns full-size (loss, gradient, misclassified).
    """
    loss_all, grad_all = previous[0].clone(), previous[1].clone()
    wrong = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    idx = active.nonzero().squeeze(1)
    if len(idx) == len(x):
        loss_all, grad_all, scores = oracle.loss_and_grad(x, y, loss, rng)
        return loss_all, grad_all, scores.argmax(1) != y
    if len(idx):
        values, grad, scores = oracle.loss_and_grad(x[idx], y[idx], loss, rng[idx])
        loss_all[idx], grad_all[idx] = values, grad
        wrong[idx] = scores.argmax(1) != y[idx]
    return loss_all, grad_all, wrong


# ---------------------------------------------------------------------------- the base class
@dataclass
class Attack:
    """Base class of every attack: a perturbation budget ``eps`` in the ``norm`` ball."""

    eps: float = 0.0
    norm: str = "linf"

    name: ClassVar[str] = ""
    #: ``white-box`` (needs gradients), ``black-box`` (scores only), ``transfer`` or ``ensemble``
    kind: ClassVar[str] = "white-box"
    #: True for attacks that take several steps (used by the gradient-masking checks)
    iterative: ClassVar[bool] = True
    norms: ClassVar[tuple[str, ...]] = NORMS
    #: settings a registered variant fixes (``apgd-dlr`` is ``apgd`` with ``loss="dlr"``)
    preset: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_gradient(self) -> bool:
        """Whether the attacker-gradient choice applies to this attack."""
        return self.kind in ("white-box", "ensemble")

    def validate(self) -> None:
        for key, value in self.preset.items():
            if getattr(self, key) != value:
                raise UsageError(
                    f"attack {self.name!r} fixes {key}={value!r}; use the base attack to change it"
                )
        self.eps = validate.non_negative(f"{self.name} eps", self.eps)
        if self.norm not in self.norms:
            raise UsageError(
                f"attack {self.name!r} supports norm {' or '.join(self.norms)}, got {self.norm!r}"
            )

    def at(self, eps: float) -> Attack:
        """The same attack with another budget."""
        return dataclasses.replace(self, eps=eps)

    def with_options(self, **options: Any) -> Attack:
        return dataclasses.replace(self, **options)

    @property
    def runs(self) -> int:
        """How many times :meth:`perturb` runs the attack (its restarts)."""
        return getattr(self, "restarts", 1)

    def perturb(self, oracle: Oracle, x: Tensor, y: Tensor, rng: RandomSource = None) -> Tensor:
        """Adversarial versions of ``x`` (same shape, inside the ε-ball and the box).

        With ``restarts > 1`` the attack is repeated on the samples not yet misclassified, and
        each sample keeps the first candidate that fooled the model (else the last one).

        Args:
            oracle: the attacker's access to the model (left exactly as it was).
            x: clean inputs ``[B, ...]``; y: labels ``[B]``.
            rng: one random stream per sample (:class:`~spikeshield.streams.SampleStreams`), or
                a ``torch.Generator`` / ``None`` (one seed drawn from it; sample i of this batch
                then uses the stream keyed by that seed and i).
        """
        streams = SampleStreams.of(rng, len(x))
        with preserved(oracle.model):
            if self.runs == 1:
                return self._run(oracle, x, y, streams)
            attempt = partial(self._run, oracle)
            return first_success(oracle, x, y, streams, [attempt] * self.runs)

    def _run(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        """One run (one restart): the oracle's per-run state (ASSG's statistics) starts afresh."""
        oracle.new_run()
        return self.perturb_once(oracle, x, y, rng)

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def settings(self) -> dict[str, Any]:
        """Every setting, JSON-able, as recorded with each result."""
        out: dict[str, Any] = {"attack": self.name, "attack_kind": self.kind}
        for f in fields(self):
            if f.metadata.get("record", True):
                out[f.name] = getattr(self, f.name)
        out.update(self.derived_settings())
        return out

    def derived_settings(self) -> dict[str, Any]:
        """Settings resolved from others (e.g. the default step size), recorded too."""
        return {}


def attack_options(name: str) -> list[str]:
    """The options (dataclass fields) an attack takes, besides eps and norm."""
    cls = ATTACKS.get(name)
    return [
        f.name for f in fields(cls) if f.init and f.name not in ("eps", "norm") and f.name not in cls.preset
    ]


def build_attack(name: str, *, strict: bool = True, **options: Any) -> Attack:
    """Build a registered attack. With ``strict=False`` options it does not take are dropped
    (the CLI passes one set of options such as ``steps`` to several attacks)."""
    cls = ATTACKS.get(name)
    accepted = {"eps", "norm", *attack_options(name)}
    if strict:
        validate.reject_unknown(f"attack {cls.name!r}", options, accepted)
    return cls(**{k: v for k, v in options.items() if k in accepted})
