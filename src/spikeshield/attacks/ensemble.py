"""Per-sample worst case over several attacks, in the spirit of AutoAttack (Croce & Hein 2020).

Each member runs on the samples that every earlier member failed to fool; a sample counts as
robust only if no member fools it. The default members follow AutoAttack's idea of diverse,
parameter-free attacks — APGD with the CE and the DLR loss, plus the gradient-free Square
attack for L∞ — but this is not the reference AutoAttack (no targeted APGD, no FAB).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.base import ATTACKS, Attack, build_attack, first_success, register_attack
from spikeshield.attacks.oracle import Oracle
from spikeshield.errors import UsageError
from spikeshield.streams import SampleStreams

DEFAULT_MEMBERS = {"linf": ("apgd-ce", "apgd-dlr", "square"), "l2": ("apgd-ce", "apgd-dlr")}


@register_attack("ensemble")
@dataclass
class Ensemble(Attack):
    """Per-sample worst case over several attacks (default APGD-CE, APGD-DLR, Square)."""

    members: tuple[str, ...] | None = None
    steps: int = 10
    restarts: int = 1
    queries: int = 1000

    kind: ClassVar[str] = "ensemble"

    def validate(self) -> None:
        super().validate()
        self.steps = validate.int_at_least("ensemble steps", self.steps, 1)
        self.restarts = validate.int_at_least("ensemble restarts", self.restarts, 1)
        self.queries = validate.int_at_least("ensemble queries", self.queries, 1)
        if self.members is not None:
            if isinstance(self.members, str) or not all(isinstance(m, str) for m in self.members):
                raise UsageError(f"ensemble members must be a list of attack names, got {self.members!r}")
            self.members = tuple(self.members)
        for name in self.member_names:
            cls = ATTACKS.get(name)
            if cls.kind not in ("white-box", "black-box"):
                raise UsageError(f"ensemble members must be white-box or black-box attacks, not {name!r}")
            if self.norm not in cls.norms:
                raise UsageError(f"ensemble member {name!r} does not support norm {self.norm!r}")

    @property
    def member_names(self) -> tuple[str, ...]:
        return self.members if self.members is not None else DEFAULT_MEMBERS[self.norm]

    def build_members(self) -> list[Attack]:
        return [
            build_attack(
                name,
                strict=False,
                eps=self.eps,
                norm=self.norm,
                steps=self.steps,
                restarts=self.restarts,
                queries=self.queries,
            )
            for name in self.member_names
        ]

    @property
    def runs(self) -> int:
        return 1  # ``restarts`` is passed to the members; the ensemble itself runs once

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        attempts = [partial(attack.perturb, oracle) for attack in self.build_members()]
        return first_success(oracle, x, y, rng, attempts)

    def derived_settings(self) -> dict[str, Any]:
        return {"members": list(self.member_names), "random_start": True}
