"""The counter-based noise of ``noisy-if``: Philox-4x32-10 and Box–Muller (kernels/philox.py).

The reference (PyTorch) must be the published generator (Random123's known-answer vectors), give
the right distributions, and be reproduced bit for bit by the C kernel (the Triton kernel's copy
is checked in test_triton_interpreter.py); the neuron's noise must follow ``torch.manual_seed``
and differ between calls, steps and elements.
"""

from __future__ import annotations

import ctypes
import math

import pytest
import torch

from spikeshield.kernels import cpu, philox
from spikeshield.neurons import build_neuron
from spikeshield.streams import SampleStreams, sample_streams

from .helpers import fresh_seed

CPU = torch.device("cpu")


def _words(*values: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(v, dtype=torch.int64) for v in values)


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # Random123 1.14, kat_vectors: philox4x32 with 10 rounds
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter: tuple, key: tuple, expected: tuple) -> None:
    words = philox.philox4x32(_words(*counter), _words(*key))  # type: ignore[arg-type]
    assert [int(w) for w in words] == list(expected)


def test_log_and_sincos_are_float32_accurate() -> None:
    k = torch.arange(0, 1 << 24, 97, dtype=torch.int64)
    u = (k.double() + 1) * 2.0**-24
    log = philox._log(u.float()).double()
    assert float(((log - torch.log(u)).abs() / torch.log(u).abs().clamp_min(2.0**-24)).max()) < 3e-7
    cos, sin = philox._sincos_turn(k << 8)
    angle = 2 * math.pi * k.double() * 2.0**-24
    assert float((cos.double() - torch.cos(angle)).abs().max()) < 3e-7
    assert float((sin.double() - torch.sin(angle)).abs().max()) < 3e-7


def test_gaussian_and_uniform_distributions() -> None:
    # the key is fresh each run, so every bound is >= 5.8 sigma of its statistic over n = 2^20 draws
    # (all together: a chance failure about 1 run in 7e7)
    keys = torch.tensor([fresh_seed()])
    z = philox.raw_noise((1 << 20,), keys, 3, "gaussian", CPU).double()
    # mean: sd 1/sqrt(n) = 9.8e-4, 6.1 sigma; std: sd 1/sqrt(2n) = 6.9e-4, 7.2 sigma
    assert abs(float(z.mean())) < 6e-3 and abs(float(z.std()) - 1) < 5e-3
    assert float(z.abs().max()) <= math.sqrt(48 * math.log(2)) + 1e-5
    for q in (-2.0, -1.0, -0.3, 0.0, 0.5, 1.5, 2.5):  # empirical CDF vs Φ (binomial sd < 5e-4)
        assert abs(float((z <= q).double().mean()) - 0.5 * math.erfc(-q / math.sqrt(2))) < 3e-3
    # the two halves of each Box–Muller pair are uncorrelated
    assert abs(float((z[0::2] * z[1::2]).mean())) < 8e-3  # sd 1/sqrt(2^19) = 1.4e-3: 5.8 sigma
    u = philox.raw_noise((1 << 20,), keys, 3, "uniform", CPU).double()
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 2e-3 and abs(float(u.var()) - 1 / 12) < 1e-3  # 7.1, 13.7 sigma
    # each of 16 bins: relative sd sqrt((15/16) / (n/16)) = 3.8e-3, so 0.025 is 6.6 sigma
    assert torch.histc(u, 16, 0, 1).div(u.numel() / 16).sub(1).abs().max() < 0.025


def test_counters_separate_keys_steps_and_elements() -> None:
    key = fresh_seed()
    base = philox.raw_noise((4, 25000), torch.tensor([key]), 0, "gaussian", CPU)
    assert torch.equal(base, philox.raw_noise((4, 25000), torch.tensor([key]), 0, "gaussian", CPU))
    for other in (
        philox.raw_noise((4, 25000), torch.tensor([key]), 1, "gaussian", CPU),
        philox.raw_noise((4, 25000), torch.tensor([key + 1]), 0, "gaussian", CPU),
    ):
        assert (other != base).float().mean() > 0.99
        # independent streams: the sample correlation of 10^5 pairs has sd 1/sqrt(10^5) = 0.0032,
        # so 0.025 is a 7.9-sigma bound (the seed is fresh each run: a chance failure must be rare)
        assert abs(float(torch.corrcoef(torch.stack((other.flatten(), base.flatten())))[0, 1])) < 0.025
    # the index is the logical element index: one key over the step, or one per row
    flat = philox.raw_noise((100000,), torch.tensor([key]), 0, "gaussian", CPU)
    assert torch.equal(flat.view(4, 25000), base)
    rows = philox.raw_noise((2, 3, 5), torch.tensor([key, key + 1]), 2, "uniform", CPU)
    assert torch.equal(rows[1], philox.raw_noise((3, 5), torch.tensor([key + 1]), 2, "uniform", CPU))


def _c_noise(keys: torch.Tensor, steps: int, per_step: int, kind: str) -> torch.Tensor:
    """The C kernel's raw noise: its point (X + ξ) − V_th with X = 0, ξ = raw·1 + 0, V_th = 0."""
    lib = cpu.library()
    assert lib is not None
    x = torch.zeros(steps, per_step)
    point, spikes = torch.empty_like(x), torch.empty_like(x)
    rows = keys.numel()
    lib.spk_noisy_forward(
        steps, rows, per_step // rows, ctypes.c_void_p(keys.data_ptr()), x.data_ptr(),
        point.data_ptr(), spikes.data_ptr(), 1.0, 0.0, 0.0, int(kind == "gaussian"), cpu.threads(),
    )  # fmt: skip
    return point


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
@pytest.mark.parametrize(("rows", "per_row", "threads"), [(1, 1, 1), (1, 4099, 1), (3, 37, 1), (1, 70001, 2)])
def test_c_kernel_noise_is_the_reference_bit_for_bit(
    kind: str, rows: int, per_row: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Odd row lengths (partial counter groups), per-sample keys, and two threads splitting a row."""
    monkeypatch.setenv("SPIKESHIELD_KERNEL_THREADS", str(threads))
    keys = torch.randint(0, philox.KEY_HIGH, (rows,))
    steps = 3
    got = _c_noise(keys, steps, rows * per_row, kind)
    for t in range(steps):
        expected = philox.raw_noise((rows, per_row), keys, t, kind, CPU).flatten()
        assert torch.equal(got[t].view(torch.int32), expected.view(torch.int32)), (
            f"{kind} step {t}: {int((got[t] != expected).sum())} values differ"
        )


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_noisy_if_follows_torch_manual_seed(noise: str) -> None:
    neuron = build_neuron("noisy-if", noise=noise)
    x = torch.full((2, 8, 3000), 0.4)
    torch.manual_seed(5)
    first, second = neuron(x), neuron(x)
    torch.manual_seed(5)
    assert torch.equal(neuron(x), first)
    assert (first != second).any()  # a new key on every call
    assert (first[0] != first[1]).any()  # and other noise at every step
    torch.manual_seed(5)
    assert torch.equal(neuron(x.transpose(1, 2).contiguous().transpose(1, 2)), first)  # layout-free


def test_noisy_if_per_sample_keys_do_not_depend_on_the_batch() -> None:
    neuron = build_neuron("noisy-if")
    x = torch.rand(2, 5, 300)
    with sample_streams(SampleStreams.keyed(7, range(5))):
        whole = neuron(x)
    with sample_streams(SampleStreams.keyed(7, range(3, 5))):
        tail = neuron(x[:, 3:])
    assert torch.equal(whole[:, 3:], tail)
