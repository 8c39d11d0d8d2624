"""Perturbations and their honest measurement.

- Random corruptions with an intensity (``CORRUPTIONS``): gaussian, uniform, salt-pepper on
  images; event-drop, event-insert, spatial-jitter on event frames.
- Attacks (``ATTACKS``, one file each): fgsm, pgd, apgd (apgd-ce, apgd-dlr), sa-pgd, square,
  transfer, ensemble. Any ``nn.Module`` mapping inputs in [0, 1] to class scores works.
- The attacker's gradient (``--gradient``): bptt, surrogate:NAME[:VALUE], bptr, true,
  assg[:A] (adaptive sharpness), combinations, adaptive — see
  :mod:`spikeshield.attacks.gradient` and :mod:`spikeshield.attacks.assg`.
- :func:`evaluate_robustness`: batched sweeps with the gradient-masking checks built in; a
  sample's result never depends on its batch mates and the model is left as it was.
- :func:`evaluate_suite`: the named suites ``rssnn-standard`` (the published list) and
  ``reliable`` (per-sample worst case over strong, diverse attacks; :mod:`.suites`).

>>> from spikeshield.attacks import build_attack, Oracle
>>> pgd = build_attack("pgd", eps=0.1, steps=10)
>>> # x_adv = pgd.perturb(Oracle(model), x, y, torch.Generator().manual_seed(0))
"""

from spikeshield.attacks import apgd, ensemble, events, fgsm, pgd, sapgd, square, transfer  # noqa: F401
from spikeshield.attacks.assg import SharpnessSearch, SharpnessStatistics, search_sharpness
from spikeshield.attacks.base import ATTACKS, NORMS, Attack, attack_options, build_attack, register_attack
from spikeshield.attacks.evaluate import StateLeakError, check_fresh_state, evaluate_robustness
from spikeshield.attacks.gradient import (
    AttackerGradient,
    GradientSpec,
    attacker_gradient,
    rate_gradient,
    resolve_gradient,
    swap_surrogate,
)
from spikeshield.attacks.noise import CORRUPTIONS, corrupt
from spikeshield.attacks.oracle import Oracle, cross_entropy_loss, dlr_loss, margin_loss
from spikeshield.attacks.preflight import InputGradientError, assert_input_gradient
from spikeshield.attacks.suites import RELIABLE_MEMBERS, SUITES, evaluate_suite
from spikeshield.attacks.transfer import RateUnit, ann_twin, fit_twin

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "NORMS",
    "RELIABLE_MEMBERS",
    "SUITES",
    "Attack",
    "AttackerGradient",
    "GradientSpec",
    "InputGradientError",
    "Oracle",
    "RateUnit",
    "SharpnessSearch",
    "SharpnessStatistics",
    "StateLeakError",
    "ann_twin",
    "assert_input_gradient",
    "attack_options",
    "attacker_gradient",
    "build_attack",
    "check_fresh_state",
    "corrupt",
    "cross_entropy_loss",
    "dlr_loss",
    "evaluate_robustness",
    "evaluate_suite",
    "fit_twin",
    "margin_loss",
    "rate_gradient",
    "register_attack",
    "resolve_gradient",
    "search_sharpness",
    "swap_surrogate",
]
