"""Noisy single-step IF neuron for noise-based fast training (Jiang & Zhang, arXiv 2211.05453)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels import philox
from spikeshield.kernels.program import NeuronProgram, SurrogateCode
from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron
from spikeshield.neurons.surrogates import Gaussian, Rectangle

NOISES = ("gaussian", "uniform")
GRADIENTS = ("expectation", "surrogate")


@register_neuron("noisy-if")
class NoisyIFNode(SpikingNeuron):
    """Stateless IF step with random membrane noise: ``S[t] = Θ(X[t] + ξ[t] − V_th)``.

    The noise ξ stands in for the residual potential a soft-reset IF neuron carries between
    steps: with ξ ~ U(0, V_th) the spike probability equals the multi-step firing rate
    clamp(X/V_th, 0, 1) exactly; Gaussian noise N(μ, σ²) is the paper's best choice. A
    network of these trained at T = 1 converts to a multi-step soft-reset IF network by copying
    the weights (the conversion and its claim are our reconstruction from the abstract).

    Each time step is independent (there is no state and no reset). The noise is counter-based:
    ξ[t] at element j is a pure function of the call's key (drawn from PyTorch's generator, so
    ``torch.manual_seed`` reproduces it; one per sample inside
    :func:`spikeshield.streams.sample_streams`), t and j — Philox-4x32-10 and Box–Muller, see
    :mod:`spikeshield.kernels.philox` — which the fused kernels compute in place, bit for bit.

    Args:
        noise: ``"gaussian"`` (``noise_mean``, ``noise_std``; default V_th/2, 0.3·V_th) or
            ``"uniform"`` (``noise_low``, ``noise_high``; default 0, V_th).
        noise_in_eval: keep sampling noise in eval mode (default True); if False, eval uses
            ξ = E[ξ], a deterministic neuron.
        gradient: ``"expectation"`` (default) backpropagates d E[S]/dX, the noise density at
            V_th − X (Gaussian-CDF or box); ``"surrogate"`` uses ``surrogate`` at the noisy point.
    """

    def __init__(
        self,
        *,
        v_threshold: float = 1.0,
        noise: str = "gaussian",
        noise_mean: float | None = None,
        noise_std: float | None = None,
        noise_low: float | None = None,
        noise_high: float | None = None,
        noise_in_eval: bool = True,
        gradient: str = "expectation",
        surrogate: Any = None,
    ) -> None:
        if noise not in NOISES:
            raise UsageError(f"noise must be one of {NOISES}, got {noise!r}")
        if gradient not in GRADIENTS:
            raise UsageError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if gradient == "expectation" and surrogate is not None:
            raise UsageError("noisy-if: a surrogate applies only with gradient='surrogate'")
        super().__init__(v_threshold=v_threshold, v_reset=0.0, surrogate=surrogate, reset="soft")
        vth = self.v_threshold
        if noise == "gaussian":
            if noise_low is not None or noise_high is not None:
                raise UsageError("noisy-if: noise_low/noise_high apply to uniform noise only")
            self.noise_mean = 0.5 * vth if noise_mean is None else validate.finite("noise_mean", noise_mean)
            self.noise_std = 0.3 * vth if noise_std is None else validate.positive("noise_std", noise_std)
            self.noise_low = self.noise_high = None
        else:
            if noise_mean is not None or noise_std is not None:
                raise UsageError("noisy-if: noise_mean/noise_std apply to gaussian noise only")
            self.noise_low = 0.0 if noise_low is None else validate.finite("noise_low", noise_low)
            self.noise_high = vth if noise_high is None else validate.finite("noise_high", noise_high)
            if self.noise_high <= self.noise_low:
                raise UsageError("noise_high must be above noise_low")
            self.noise_mean = 0.5 * (self.noise_low + self.noise_high)
            self.noise_std = None
        self.noise = noise
        self.noise_in_eval = noise_in_eval
        self.gradient = gradient
        if gradient == "expectation":
            self.surrogate = (
                Gaussian(self.noise_std)
                if noise == "gaussian"
                else Rectangle(self.noise_high - self.noise_low)
            )
        self._surrogate_option = surrogate

    def initial_state(self, x_t: Tensor) -> State:
        """The call's Philox key(s) when it samples noise (see :mod:`spikeshield.kernels.philox`)."""
        return {"keys": philox.draw_keys(x_t)} if self.samples_noise() else {}

    def samples_noise(self) -> bool:
        """Whether a forward call now draws noise (training, or ``noise_in_eval``)."""
        return self.training or self.noise_in_eval

    def sample_noise(self, like: Tensor, keys: Tensor, t: int) -> Tensor:
        """ξ[t] shaped like ``like``: ``raw·σ + μ`` or ``raw·(b − a) + a``, raw from the Philox counters
        (key, t, element index), computed in float32 and cast to ``like``'s dtype."""
        raw = philox.raw_noise(like.shape, keys, t, self.noise, like.device).to(like.dtype)
        if self.noise == "gaussian":
            return raw * self.noise_std + self.noise_mean
        return raw * (self.noise_high - self.noise_low) + self.noise_low

    def step(self, x_t: Tensor, state: State, t: int) -> tuple[Tensor, State, Tensor]:
        if self.samples_noise():
            if "keys" not in state:  # a state given by the caller
                state = self.initial_state(x_t)
            h = x_t + self.sample_noise(x_t, state["keys"], t)
        else:
            h = x_t + self.noise_mean
        x = h - self.v_threshold
        if self.gradient == "expectation":
            s = self.surrogate(x, x_t + self.noise_mean - self.v_threshold)
        else:
            s = self.surrogate(x)
        return s, state, h

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        """ξ = raw·scale + offset with raw ~ N(0, 1) or U(0, 1) from the same Philox counters as
        :meth:`sample_noise` (the kernel computes raw; the keys come from :meth:`initial_state`)."""
        if self.noise == "gaussian":
            scale, offset = float(self.noise_std or 0.0), float(self.noise_mean)
        else:
            low, high = float(self.noise_low or 0.0), float(self.noise_high or 0.0)
            scale, offset = high - low, low
        return NeuronProgram(
            surrogate=surrogate,
            v_threshold=float(self.v_threshold),
            noisy=True,
            noise_kind=self.noise,
            noise_scale=scale,
            noise_offset=offset,
            noise_mean=float(self.noise_mean),
            sample_noise=self.samples_noise(),
            expectation_gradient=self.gradient == "expectation",
        )

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "v_threshold": self.v_threshold, "noise": self.noise}
        if self.noise == "gaussian":
            spec.update(noise_mean=self.noise_mean, noise_std=self.noise_std)
        else:
            spec.update(noise_low=self.noise_low, noise_high=self.noise_high)
        spec.update(noise_in_eval=self.noise_in_eval, gradient=self.gradient)
        if self.gradient == "surrogate":
            spec["surrogate"] = self.surrogate.spec()
        return spec
