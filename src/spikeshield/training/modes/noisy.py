"""Noise-based fast training (Jiang & Zhang, Neural Computation 35(9), 2023; arXiv 2211.05453)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.training.conversion import ConversionMode
from spikeshield.training.modes import register_training_mode

if TYPE_CHECKING:
    from spikeshield.data import ArrayDataset
    from spikeshield.models import SpikingModel
    from spikeshield.training.config import TrainConfig

#: options passed on to the source's ``noisy-if`` neurons
NOISE_OPTIONS = ("noise", "noise_mean", "noise_std", "noise_low", "noise_high", "noise_in_eval", "gradient",
                 "surrogate")  # fmt: skip


OWN_OPTIONS = ("threshold_scale", "sweep", "sweep_v_init", "source_time_steps")


@register_training_mode("noisy")
class NoisyConversion(ConversionMode):
    """Train a single-step network of ``noisy-if`` neurons, then copy its weights into soft-reset
    IF neurons run for the run's ``time_steps`` N (lossless in expectation for uniform noise).

    One noisy step ``S = Θ(X + ξ − V_th)`` with ξ ~ N(μ, σ²) or U(a, b) stands for the residual
    potential a soft-reset IF neuron carries between steps, so ``E[S]`` approximates the
    multi-step firing rate (exactly, ``clamp(X/V_th, 0, 1)``, for ξ ~ U(0, V_th)). The source is
    trained at T = ``source_time_steps`` (1) with plain BPTT into ``RUN/source/``, then converted
    by :func:`spikeshield.models.conversion.to_multistep` into the run's neurons (``if``,
    ``reset = soft``; V[0] = ``v_init`` of the run's neuron options, V_th/2 in our experiments).
    [recon: reconstructed from the abstract; every choice is an option.]

    Args:
        noise, noise_mean, noise_std, noise_low, noise_high, noise_in_eval, gradient, surrogate:
            the source's ``noisy-if`` options (defaults: Gaussian, μ = V_th/2, σ = 0.3·V_th,
            gradient = the noise density); its V_th is the run neuron's.
        threshold_scale: θ; see :func:`spikeshield.models.conversion.to_multistep`.
        sweep, sweep_v_init: time steps at which the converted network's test accuracy is also
            measured, and other start potentials (fractions of V_th) to measure them with.
        source_time_steps: T of the noisy training (1 in the paper).
    """

    source_neuron = "noisy-if"
    method = "multistep"

    def __init__(
        self,
        threshold_scale: float = 1.0,
        sweep: Sequence[int] | None = None,
        sweep_v_init: Sequence[float] | None = None,
        source_time_steps: int = 1,
        **noise: Any,
    ) -> None:
        from spikeshield.neurons import build_neuron

        super().__init__(threshold_scale, sweep, sweep_v_init)
        self.steps = validate.positive_int("source_time_steps", source_time_steps)
        unknown = sorted(set(noise) - set(NOISE_OPTIONS))
        if unknown:
            takes = ", ".join((*OWN_OPTIONS, *NOISE_OPTIONS))
            raise UsageError(
                f"training mode 'noisy' does not take option(s) {', '.join(unknown)}; it takes: {takes}"
            )
        self.noise = dict(noise)
        build_neuron("noisy-if", **self.noise)  # unknown or bad noise options: a UsageError now

    def source_options(self, config: TrainConfig) -> dict[str, Any]:
        threshold = {k: v for k, v in config.neuron_options.items() if k == "v_threshold"}
        return {**self.noise, **threshold}

    def source_time_steps(self) -> int:
        return self.steps

    @classmethod
    def options_from_source(cls, source: TrainConfig) -> dict[str, Any]:
        noise = {k: v for k, v in source.neuron_options.items() if k in NOISE_OPTIONS}
        return {**noise, **({"source_time_steps": source.time_steps} if source.time_steps != 1 else {})}

    def convert(
        self, source: SpikingModel, config: TrainConfig, train_set: Callable[[], ArrayDataset]
    ) -> tuple[SpikingModel, dict[str, Any]]:
        from spikeshield.models.conversion import to_multistep

        model = to_multistep(
            source,
            config.time_steps,
            threshold_scale=self.threshold_scale,
            neuron_options=config.neuron_options,
        )
        return model, {"threshold_scale": self.threshold_scale}
