"""Every neuron against hand-computed sequences, analytic firing rates and float64 gradcheck."""

import math

import pytest
import torch
from torch.func import functional_call

from spikeshield.errors import UsageError
from spikeshield.neurons import NEURONS, build_neuron, neuron_factory, smooth_spikes, true_gradient
from spikeshield.neurons.surrogates import Sigmoid


def seq(values, batch: int = 1) -> torch.Tensor:
    """[T] values -> [T, batch, 1] input."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1).expand(-1, batch, 1).contiguous()


def spikes_of(neuron, values):
    return neuron(seq(values)).view(-1).tolist()


# ------------------------------------------------------------------ hand-computed sequences
def test_if_hard_reset_sequence():
    n = build_neuron("if")
    # H: 0.6, 1.2 (spike → 0), 0.6, 0.8
    out = n.run(seq([0.6, 0.6, 0.6, 0.2]), record=True)
    assert out.spikes.view(-1).tolist() == [0, 1, 0, 0]
    assert out.h.view(-1).tolist() == pytest.approx([0.6, 1.2, 0.6, 0.8])
    assert out.v.view(-1).tolist() == pytest.approx([0.6, 0.0, 0.6, 0.8])


def test_if_soft_reset_sequence():
    n = build_neuron("if", reset="soft")
    out = n.run(seq([0.6, 0.6, 0.6, 0.6]), record=True)
    assert out.spikes.view(-1).tolist() == [0, 1, 0, 1]
    assert out.v.view(-1).tolist() == pytest.approx([0.6, 0.2, 0.8, 0.4])


def test_lif_decay_input_sequence():
    n = build_neuron("lif", tau=2.0)
    # H1 = 1.5/2 = 0.75; H2 = 0.75 + (1.5 − 0.75)/2 = 1.125 → spike; H3 = 0.75
    out = n.run(seq([1.5, 1.5, 1.5]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.75, 1.125, 0.75])
    assert out.spikes.view(-1).tolist() == [0, 1, 0]


def test_lif_no_decay_input_sequence():
    n = build_neuron("lif", tau=2.0, decay_input=False)
    # H = V − V/2 + X: 0.6, 0.9, 1.05 → spike
    out = n.run(seq([0.6, 0.6, 0.6]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.6, 0.9, 1.05])
    assert out.spikes.view(-1).tolist() == [0, 0, 1]


def test_lif_multiplicative_sequence():
    n = build_neuron("lif", decay=0.9)
    # H = 0.9V + X: 0.6, 1.14 → spike, 0.6
    out = n.run(seq([0.6, 0.6, 0.6]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.6, 1.14, 0.6])
    assert out.spikes.view(-1).tolist() == [0, 1, 0]


def test_lif_nonzero_reset_potential_leaks_towards_rest():
    n = build_neuron("lif", tau=2.0, v_reset=-1.0, v_threshold=0.0)
    out = n.run(seq([0.0, 0.0]), record=True)  # starts at rest and stays there
    assert out.h.view(-1).tolist() == pytest.approx([-1.0, -1.0])


def test_linear_lif_sequence_with_floor():
    n = build_neuron("linear-lif", leak=0.2)
    # H = max(V − 0.2, 0) + X: 0.5, 0.8, 1.1 → spike; 0; 0
    out = n.run(seq([0.5, 0.5, 0.5, 0.0, 0.0]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.5, 0.8, 1.1, 0.0, 0.0])
    assert out.spikes.view(-1).tolist() == [0, 0, 1, 0, 0]


def test_linear_lif_without_floor_leaks_below_rest():
    # no floor: H = V − 0.2 + X from V0 = 0: 0.3, 0.1, −0.1, −0.3
    n = build_neuron("linear-lif", leak=0.2, floor=None)
    out = n.run(seq([0.5, 0.0, 0.0, 0.0]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.3, 0.1, -0.1, -0.3])
    # floor −0.15: max(−0.2, −0.15) + 0.5 = 0.35, 0.15, −0.05, −0.15
    n2 = build_neuron("linear-lif", leak=0.2, floor=-0.15)
    assert n2.run(seq([0.5, 0.0, 0.0, 0.0]), record=True).h.view(-1).tolist() == pytest.approx(
        [0.35, 0.15, -0.05, -0.15]
    )


def test_klif_sequence():
    n = build_neuron("klif", k_init=2.0)
    # H1 = 0.3, F1 = 0.6 (no spike, V = 0.6); H2 = 0.6 + (0.6 − 0.6)/2 = 0.6, F2 = 1.2 → spike
    out = n.run(seq([0.6, 0.6]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.6, 1.2])
    assert out.spikes.view(-1).tolist() == [0, 1]
    # the ReLU clips negative potential
    assert n.run(seq([-1.0]), record=True).h.view(-1).tolist() == [0.0]


def test_klif_scale_reset_divides_by_k():
    n = build_neuron("klif", k_init=2.0, scale_reset=True)
    # V1 = F1/k = 0.3; H2 = 0.3 + (0.6 − 0.3)/2 = 0.45, F2 = 0.9 → no spike
    out = n.run(seq([0.6, 0.6]), record=True)
    assert out.v.view(-1).tolist() == pytest.approx([0.3, 0.45])
    assert out.spikes.view(-1).tolist() == [0, 0]
    soft = build_neuron("klif", k_init=2.0, scale_reset=True, reset="soft")
    # F1 = relu(2·0.75) = 1.5 → spike; V1 = (1.5 − 1)/2 = 0.25
    assert soft.run(seq([1.5]), record=True).v.view(-1).tolist() == pytest.approx([0.25])


def test_klif_k_scales_the_surrogate_seen_by_h():
    x = torch.tensor([[[0.3]]], dtype=torch.float64, requires_grad=True)
    for k in (1.0, 3.0):
        n = build_neuron("klif", k_init=k).double()
        n(x).sum().backward()
        h = 0.3 / 2  # H = X/τ
        expected = Sigmoid(4.0).grad(torch.tensor(k * h - 1.0, dtype=torch.float64)) * k / 2
        assert x.grad.item() == pytest.approx(expected.item())
        x.grad = None


def _sigmoid_grad(u: float) -> float:
    return Sigmoid(4.0).grad(torch.tensor(u, dtype=torch.float64)).item()


@pytest.mark.parametrize("fused", [False, True])
def test_klif_two_step_hand_example(fused):
    """k = 2, τ = 2, V_th = 1, X = [0.25, 0.75], sigmoid surrogate α = 4 (issue 17's example).

    Soft reset (V_reset = 0): H1 = 0.25/2 = 0.125, F1 = 0.25 (no spike), V1 = 0.25;
    H2 = 0.25 + (0.75 − 0.25)/2 = 0.5, F2 = 1.0 ≥ V_th → spike, V2 = 1.0 − 1 = 0.
    Hard reset to V_reset = 0.1 (which is also V[0]): H1 = 0.1 + 0.25/2 = 0.225, F1 = 0.45,
    V1 = 0.45; H2 = 0.45 + (0.75 − 0.35)/2 = 0.65, F2 = 1.3 → spike, V2 = V_reset = 0.1.
    (The issue quotes [0.25, 0.25] and [0.25, 0.1]; those do not follow from these equations.)
    """
    dtype = torch.float32 if fused else torch.float64
    x = torch.tensor([[[0.25]], [[0.75]]], dtype=dtype)
    for options, f, v in (
        ({"reset": "soft"}, [0.25, 1.0], [0.25, 0.0]),
        ({"reset": "hard", "v_reset": 0.1}, [0.45, 1.3], [0.45, 0.1]),
    ):
        n = build_neuron("klif", k_init=2.0, **options).to(dtype)
        out = n.run(x, record=True)
        assert out.h.view(-1).tolist() == pytest.approx(f)
        assert out.v.view(-1).tolist() == pytest.approx(v)
        assert out.spikes.view(-1).tolist() == [0.0, 1.0]
        assert n(x).view(-1).tolist() == [0.0, 1.0]  # the fused kernel (float32) or the reference


@pytest.mark.parametrize("fused", [False, True])
def test_klif_two_step_gradient_by_hand(fused):
    """d(S1 + S2)/dk and d(S1 + S2)/dX of the soft-reset example above, derived by hand.

    F1 = k·X1/2, V1 = F1 − S1, F2 = k·H2 with H2 = V1/2 + X2/2; g(u) = α σ(αu)(1 − σ(αu)).
    dS1/dk = g1·X1/2; dV1/dk = X1/2 − dS1/dk; dS2/dk = g2·(H2 + k·dV1/dk/2).
    dS1/dX1 = g1·k/2; dV1/dX1 = k/2 − dS1/dX1; dS2/dX1 = g2·k·dV1/dX1/2; dS2/dX2 = g2·k/2.
    """
    dtype = torch.float32 if fused else torch.float64
    k, x1, x2 = 2.0, 0.25, 0.75
    g1, g2 = _sigmoid_grad(k * x1 / 2 - 1.0), _sigmoid_grad(1.0 - 1.0)
    ds1_dk = g1 * x1 / 2
    ds2_dk = g2 * (0.5 + k * (x1 / 2 - ds1_dk) / 2)
    ds1_dx1 = g1 * k / 2
    expected_x = [ds1_dx1 + g2 * k * (k / 2 - ds1_dx1) / 2, g2 * k / 2]
    n = build_neuron("klif", k_init=k, reset="soft").to(dtype)
    x = torch.tensor([[[x1]], [[x2]]], dtype=dtype, requires_grad=True)
    spikes = n(x) if fused else n.run(x).spikes
    spikes.sum().backward()
    assert n.k.grad.item() == pytest.approx(ds1_dk + ds2_dk, rel=1e-5)
    assert x.grad.view(-1).tolist() == pytest.approx(expected_x, rel=1e-5)
    assert n.k.grad.item() != 0.0  # k learns


def test_learned_values_name_the_learned_constants():
    assert build_neuron("klif", k_init=1.5).learned_values() == {"k": 1.5}
    assert build_neuron("klif", learnable_k=False).learned_values() == {}
    assert build_neuron("plif", tau=3.0).learned_values() == pytest.approx({"tau": 3.0})
    assert build_neuron("lif").learned_values() == {} and build_neuron("if").learned_values() == {}
    both = build_neuron("klif", k_init=2.0, learnable_tau=True, tau=4.0).learned_values()
    assert both == pytest.approx({"tau": 4.0, "k": 2.0})


def test_dlif_gain_per_step():
    n = build_neuron("dlif", time_steps=2)
    with torch.no_grad():
        n.gain.copy_(torch.tensor([1.0, 2.0]))
    # H1 = 0.5; H2 = 0.99·0.5 + 2·0.3 = 1.095 → spike
    out = n.run(seq([0.5, 0.3]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.5, 1.095])
    assert out.spikes.view(-1).tolist() == [0, 1]
    assert n.surrogate.name == "triangle" and n.reset_mode == "hard" and not n.detach_reset


def test_dlif_rejects_other_time_steps():
    n = build_neuron("dlif", time_steps=4)
    with pytest.raises(UsageError, match="T = 4.*T = 3"):
        n(torch.rand(3, 2, 5))


def test_oscillating_membrane_sequence():
    n = build_neuron("oscillating-lif", amplitude=0.5, frequency=0.25, phase=0.0)
    # osc(t) = 0.5 sin(πt/2) = 0, 0.5, 0, −0.5; LIF τ = 2, X = 1:
    # H0 = 0.5; H1 = 0.5 + 0.25 + 0.5 = 1.25 → spike; H2 = 0.5; H3 = 0.5 + 0.25 − 0.5 = 0.25
    out = n.run(seq([1.0, 1.0, 1.0, 1.0]), record=True)
    assert out.h.view(-1).tolist() == pytest.approx([0.5, 1.25, 0.5, 0.25], abs=1e-12)
    assert out.spikes.view(-1).tolist() == [0, 1, 0, 0]


def test_oscillating_threshold_sequence():
    # threshold V_th(t) = 1 + A·sin(πt/2 + φ); plain LIF charge, X = 0.9: H0 = 0.45, H1 = 0.675
    n = build_neuron("oscillating-lif", amplitude=0.3, frequency=0.25, phase=0.0, target="threshold")
    assert n.run(seq([0.9, 0.9])).spikes.view(-1).tolist() == [0, 0]  # V_th(1) = 1.3
    n2 = build_neuron("oscillating-lif", amplitude=0.4, frequency=0.25, phase=math.pi, target="threshold")
    assert n2.run(seq([0.9, 0.9])).spikes.view(-1).tolist() == [0, 1]  # V_th(1) = 0.6


def test_oscillating_fake_gradient_and_true_gradient_switch():
    a = 0.5
    n = build_neuron("oscillating-lif", amplitude=a, phase=math.pi / 2, backward_amplitude=0.0).double()
    assert n.has_fake_gradient
    x = torch.tensor([[[0.6]]], dtype=torch.float64, requires_grad=True)
    s = n(x)
    # forward uses the true oscillation: H = 0.3 + 0.5 = 0.8 → no spike
    assert s.item() == 0.0
    s.sum().backward()
    g = Sigmoid(4.0).grad
    fake = (g(torch.tensor(0.3 - 1.0, dtype=torch.float64)) * 0.5).item()
    assert x.grad.item() == pytest.approx(fake)
    x.grad = None
    with true_gradient(n) as switched:
        assert switched == 1
        n(x).sum().backward()
    true = (g(torch.tensor(0.8 - 1.0, dtype=torch.float64)) * 0.5).item()
    assert x.grad.item() == pytest.approx(true)
    assert n.fake_gradient  # restored
    # an undefended neuron has nothing to switch
    with true_gradient(build_neuron("lif")) as switched:
        assert switched == 0


def test_oscillating_random_phase_is_stochastic_per_call():
    n = build_neuron("oscillating-lif", amplitude=1.0, random_phase=True)
    x = torch.full((6, 64, 32), 0.9)
    torch.manual_seed(0)
    a = n(x)
    b = n(x)
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    assert torch.equal(n(x), a)


def test_noisy_if_deterministic_eval_and_rate():
    n = build_neuron("noisy-if", noise="uniform", noise_in_eval=False).eval()
    # ξ = E[ξ] = 0.5: S = Θ(X + 0.5 − 1)
    assert spikes_of(n, [0.4, 0.5, 0.6]) == [0, 1, 1]
    # with uniform(0, V_th) noise, P(spike) = clamp(X, 0, 1): the multi-step IF rate
    noisy = build_neuron("noisy-if", noise="uniform").train()
    torch.manual_seed(0)
    x = torch.tensor([-0.2, 0.1, 0.3, 0.5, 0.8, 1.3]).view(1, 1, -1).expand(1, 20000, -1)
    rate = noisy(x).mean(dim=(0, 1))
    torch.testing.assert_close(rate, torch.tensor([0.0, 0.1, 0.3, 0.5, 0.8, 1.0]), atol=0.015, rtol=0)


def test_noisy_if_expectation_gradient_is_noise_density():
    n = build_neuron("noisy-if", noise="gaussian", noise_mean=0.5, noise_std=0.3).double().train()
    x = torch.tensor([[[0.2, 0.5, 0.9]]], dtype=torch.float64, requires_grad=True)
    n(x).sum().backward()
    z = (x.detach() + 0.5 - 1.0) / 0.3
    expected = torch.exp(-0.5 * z**2) / (0.3 * math.sqrt(2 * math.pi))
    torch.testing.assert_close(x.grad, expected)


# ------------------------------------------------------------------ analytic firing rates
@pytest.mark.parametrize("current", [0.05, 0.2, 0.37, 0.5, 0.81, 1.0])
def test_if_soft_reset_rate_is_current_over_threshold(current):
    n = build_neuron("if", reset="soft", v_threshold=1.0)
    t = 2000
    rate = n(torch.full((t, 1, 1), current, dtype=torch.float64)).mean().item()
    assert rate == pytest.approx(current, abs=1.5 / t)  # floor(T·I)/T, ± one spike of rounding
    n2 = build_neuron("if", reset="soft", v_threshold=2.0)
    assert n2(torch.full((t, 1, 1), current, dtype=torch.float64)).mean().item() == pytest.approx(
        current / 2, abs=1.5 / t
    )


@pytest.mark.parametrize("current,leak", [(0.3, 0.1), (0.5, 0.1), (0.8, 0.2), (0.6, 0.3), (0.95, 0.05)])
def test_linear_lif_rate_is_current_minus_leak_over_threshold(current, leak):
    t = 2000
    drive = torch.full((t, 1, 1), current, dtype=torch.float64)
    # without a floor every step nets I − λ, so the soft-reset rate is exactly (I − λ)/V_th
    free = build_neuron("linear-lif", leak=leak, floor=None, reset="soft")
    assert free(drive).mean().item() == pytest.approx(current - leak, abs=1.5 / t)
    # with the floor at rest the leak cannot take potential that is not there after a reset,
    # so the rate lies between (I − λ)/V_th and the no-leak rate I/V_th
    floored = build_neuron("linear-lif", leak=leak, reset="soft")
    rate = floored(drive).mean().item()
    assert current - leak - 1.5 / t <= rate <= current + 1.5 / t


def test_linear_lif_rate_falls_as_leak_grows():
    for floor in ("v_reset", None):
        rates = []
        for leak in (0.0, 0.1, 0.2, 0.3, 0.4):
            n = build_neuron("linear-lif", leak=leak, reset="soft", floor=floor)
            rates.append(n(torch.full((500, 1, 1), 0.5, dtype=torch.float64)).mean().item())
        assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] / 2, (floor, rates)


@pytest.mark.parametrize("tau", [1.5, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("current", [1.05, 1.3, 2.0, 5.0])
def test_exponential_lif_rate_matches_closed_form(tau, current):
    # hard reset to 0, decay_input: V_n = I(1 − (1 − 1/τ)^n); first n with V_n ≥ 1
    n_star = math.ceil(math.log(1 - 1 / current) / math.log(1 - 1 / tau))
    if current * (1 - (1 - 1 / tau) ** (n_star - 1)) >= 1:  # guard rounding at the boundary
        n_star -= 1
    t = 600
    n = build_neuron("lif", tau=tau)
    spikes = n(torch.full((t, 1, 1), current, dtype=torch.float64)).view(-1)
    assert int(spikes.sum()) == t // n_star
    first = int(torch.nonzero(spikes)[0])
    assert first == n_star - 1


def test_exponential_lif_below_threshold_never_fires():
    n = build_neuron("lif", tau=2.0)
    assert n(torch.full((500, 1, 1), 0.999, dtype=torch.float64)).sum() == 0
    m = build_neuron("lif", tau=2.0, decay_input=False)  # fires iff I·τ > V_th
    assert m(torch.full((500, 1, 1), 0.49, dtype=torch.float64)).sum() == 0
    assert m(torch.full((500, 1, 1), 0.51, dtype=torch.float64)).sum() > 0


# ------------------------------------------------------------------ gradients
GRADCHECK_CASES = [
    ("if", {}),
    ("if", {"reset": "soft"}),
    ("lif", {"tau": 2.0, "surrogate": "atan"}),
    ("lif", {"tau": 3.0, "decay_input": False, "reset": "soft"}),
    ("lif", {"decay": 0.8, "surrogate": "triangle:2"}),
    ("plif", {"tau": 2.0}),
    ("linear-lif", {"leak": 0.05, "floor": None}),
    ("linear-lif", {"leak": 0.05, "surrogate": "rectangle:3"}),
    ("klif", {"k_init": 1.5}),
    ("klif", {"k_init": 1.5, "scale_reset": True, "reset": "soft"}),
    ("dlif", {"time_steps": 4}),
    ("oscillating-lif", {"amplitude": 0.3}),
    ("oscillating-lif", {"amplitude": 0.3, "target": "threshold", "reset": "soft"}),
    ("noisy-if", {"noise_in_eval": False}),
]


@pytest.mark.parametrize("name,options", GRADCHECK_CASES, ids=lambda v: str(v))
def test_gradcheck_float64_smooth_forward(name, options):
    """With the smooth primitive as forward, autograd's analytic gradient (which uses the
    surrogate g) must equal finite differences — inputs and learnable parameters alike."""
    torch.manual_seed(0)
    n = build_neuron(name, **options).double().eval()
    x = (torch.rand(4, 2, 3, dtype=torch.float64) * 1.5).requires_grad_(True)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in n.named_parameters()}
    names = list(params)

    def f(x, *values):
        return functional_call(n, dict(zip(names, values)), (x,))

    with smooth_spikes():
        assert torch.autograd.gradcheck(f, (x, *params.values()), atol=1e-6, rtol=1e-5)


def test_learnable_parameters_receive_gradients():
    cases = {"klif": ("k",), "dlif": ("gain",), "plif": ("tau_logit",), "lif": ()}
    for name, expected in cases.items():
        n = build_neuron(name, **({"time_steps": 3} if name == "dlif" else {}))
        x = (torch.rand(3, 4, 5) * 2).requires_grad_(True)
        n(x).sum().backward()
        got = {k for k, p in n.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert got == set(expected)


def test_detach_reset_cuts_the_gradient_through_the_reset():
    # one hard-reset step: V = H(1 − S); dV/dX = (1 − S) − H·g(H − V_th)·dH/dX, detached: (1 − S)
    x = torch.tensor([[[0.9]]], dtype=torch.float64, requires_grad=True)
    g = Sigmoid(4.0).grad(torch.tensor(0.9 - 1.0, dtype=torch.float64)).item()
    for detach, expected in ((False, 1.0 - 0.9 * g), (True, 1.0)):
        n = build_neuron("if", detach_reset=detach)
        (dv,) = torch.autograd.grad(n.run(x, record=True).v.sum(), x)
        assert dv.item() == pytest.approx(expected)


def test_fresh_state_on_every_call():
    for name in NEURONS.names():
        n = build_neuron(name, **({"time_steps": 5} if name == "dlif" else {}))
        if name == "noisy-if":
            n = build_neuron(name, noise_in_eval=False).eval()
        x = torch.rand(5, 3, 7) * 1.5
        assert torch.equal(n(x), n(x)), name


# ------------------------------------------------------------------ options and input checks
@pytest.mark.parametrize(
    "name,options,message",
    [
        ("if", {"tau": 2.0}, "does not take option.*tau"),
        ("lif", {"leak": 0.1}, "does not take option.*leak"),
        ("lif", {"tau": 1.0}, "tau must be > 1"),
        ("lif", {"tau": 0.5}, "tau must be > 1"),
        ("lif", {"decay": 0.9, "tau": 2.0}, "multiplicative.*tau"),
        ("lif", {"decay": 1.5}, r"decay must be in \(0, 1\]"),
        ("plif", {"learnable_tau": False}, "does not take option"),
        ("linear-lif", {"leak": -0.1}, "leak must be >= 0"),
        ("linear-lif", {"floor": "abc"}, "floor must be"),
        ("klif", {"k_init": 0}, "k_init must be > 0"),
        ("dlif", {}, "time_steps"),
        ("dlif", {"time_steps": 0}, "time_steps must be a positive integer"),
        ("noisy-if", {"reset": "soft"}, "does not take option"),
        ("noisy-if", {"noise": "uniform", "noise_std": 0.1}, "gaussian noise only"),
        ("noisy-if", {"noise_std": 0.0}, "noise_std must be > 0"),
        ("noisy-if", {"surrogate": "atan"}, "only with gradient='surrogate'"),
        ("oscillating-lif", {"target": "both"}, "target must be"),
        ("oscillating-lif", {"amplitude": -1}, "amplitude must be >= 0"),
        ("if", {"reset": "medium"}, "reset must be one of"),
        ("if", {"v_threshold": 0.0}, "must be above v_reset"),
        ("if", {"v_threshold": float("nan")}, "finite number"),
        ("if", {"surrogate": "sigmod"}, "did you mean 'sigmoid'"),
        ("lfi", {}, "did you mean 'lif'"),
    ],
)
def test_bad_options_are_rejected_clearly(name, options, message):
    with pytest.raises(UsageError, match=f"(?i){message}"):
        build_neuron(name, **options)


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.rand(5), r"shape \[T, B, \.\.\.\]"),
        (torch.ones(3, 2, dtype=torch.long), "floating-point"),
        (torch.empty(0, 2), "T = 0"),
        ([1.0, 2.0], "expects a tensor"),
    ],
)
def test_bad_inputs_are_rejected_clearly(x, message):
    with pytest.raises(UsageError, match=message):
        build_neuron("lif")(x)


def test_spec_rebuilds_the_same_neuron():
    for name in NEURONS.names():
        n = build_neuron(name, **({"time_steps": 3} if name == "dlif" else {}))
        spec = n.spec()
        again = build_neuron(spec.pop("name"), **spec)
        assert again.spec() == n.spec()


def test_neuron_factory_validates_up_front_and_makes_fresh_modules():
    make = neuron_factory("dlif", time_steps=3, decay=0.5)
    a, b = make(), make()
    assert a is not b and a.decay == 0.5 and a.time_steps == 3
    with pytest.raises(UsageError):
        neuron_factory("lif", tau=0.2)
