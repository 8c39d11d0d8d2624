"""Per-sample random streams: a sample's random draws never depend on its batch mates.

An evaluation draws random numbers for corruptions, attack random starts, Square's windows,
restarts and the stochastic model's own noise (EOT). If those draws came from one generator per
batch, a sample's draws would depend on the batch size, the order and the short last batch.
Instead every sample ``i`` of the evaluated set gets its own stream, a ``torch.Generator`` seeded
by ``derive_seed(seed, *tags, i)``; a batch is a list of streams, and a subset of a batch (the
samples an attack still works on) is the sub-list, sharing the streams' state. Sample ``i``'s
draws are then a function of the seed, the tags and ``i`` alone.

Stochastic modules (the Poisson encoder, the oscillating neuron's random phase) draw through
:func:`rand_like` / :func:`randn_like` with their batch dimension: outside :func:`sample_streams`
these are ``torch.rand_like`` / ``torch.randn_like`` (training is unchanged); inside, each
sample's noise comes from its own stream. ``noisy-if`` draws its Philox keys through
:func:`randint` the same way (one per sample inside the block). All draws are made on the CPU
and moved to the tensor's device, so results reproduce across devices.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

Draw = Callable[[torch.Generator, int], Tensor]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed derived from ``parts`` (stable across runs and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class SampleStreams:
    """One independent random stream per sample of a batch.

    Args:
        generators: one CPU ``torch.Generator`` per sample, in batch order.

    Build them with :meth:`keyed` (from a seed and the samples' indices in the evaluated set) or
    :meth:`of` (from whatever a caller passed). Every draw method returns ``[n, *shape]``: row
    ``i`` drawn from stream ``i`` only.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def keyed(cls, seed: int, indices: Iterable[int], *tags: object) -> SampleStreams:
        """Stream ``i`` seeded by ``derive_seed(seed, *tags, indices[i])``."""
        return cls([torch.Generator().manual_seed(derive_seed(seed, *tags, int(i))) for i in indices])

    @classmethod
    def of(cls, rng: SampleStreams | torch.Generator | None, n: int) -> SampleStreams:
        """Streams for a batch of ``n`` samples from what a caller passed.

        ``SampleStreams`` are used as they are (their length must be ``n``); a ``Generator``
        (or ``None``: the global RNG) gives one seed, and sample ``i`` of the batch is keyed by
        that seed and ``i``.
        """
        if isinstance(rng, SampleStreams):
            if len(rng) != n:
                raise ValueError(f"{len(rng)} random streams for a batch of {n} samples")
            return rng
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        return cls.keyed(seed, range(n))

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, index: Tensor | slice | Sequence[int]) -> SampleStreams:
        """The streams of a subset of the samples (the same generators: drawing advances them)."""
        if isinstance(index, slice):
            return SampleStreams(self.generators[index])
        if isinstance(index, Tensor):
            index = index.reshape(-1).tolist()
        return SampleStreams([self.generators[int(i)] for i in index])

    def draw(self, fn: Draw, shape: Sequence[int] = (), device: torch.device | str | None = None) -> Tensor:
        """``stack([fn(generator_i, i) for each sample])``; ``shape`` is one sample's (for n = 0)."""
        if not self.generators:
            return torch.empty(0, *shape, device=device)
        out = torch.stack([fn(g, i) for i, g in enumerate(self.generators)])
        return out if device is None else out.to(device)

    def uniform(self, shape: Sequence[int], **kind: Any) -> Tensor:
        """``[n, *shape]`` draws from U[0, 1) (``dtype``, ``device`` as keywords)."""
        return self._each(torch.rand, tuple(shape), **kind)

    def normal(self, shape: Sequence[int], **kind: Any) -> Tensor:
        """``[n, *shape]`` draws from N(0, 1) (``dtype``, ``device`` as keywords)."""
        return self._each(torch.randn, tuple(shape), **kind)

    def _each(
        self,
        sample: Callable[..., Tensor],
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        return self.draw(lambda g, _i: sample(shape, generator=g, dtype=dtype), shape, device)


_ACTIVE: contextvars.ContextVar[SampleStreams | None] = contextvars.ContextVar(
    "spikeshield_sample_streams", default=None
)


@contextlib.contextmanager
def sample_streams(streams: SampleStreams | None) -> Iterator[None]:
    """Within this block, stochastic modules draw each sample's noise from its own stream.

    ``None`` leaves the global RNG in charge (the default everywhere else).
    """
    token = _ACTIVE.set(streams)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    """Whether a :func:`sample_streams` block is in charge of the stochastic modules' draws."""
    return _ACTIVE.get() is not None


def _active_for(x: Tensor, batch_dim: int) -> SampleStreams:
    streams = _ACTIVE.get()
    assert streams is not None
    if x.dim() <= batch_dim or x.shape[batch_dim] != len(streams):
        raise RuntimeError(
            f"a random draw of shape {list(x.shape)} has no batch dimension {batch_dim} of the "
            f"{len(streams)} samples being evaluated: a stochastic module must draw through "
            "spikeshield.streams.rand_like/randn_like/randint with its batch dimension"
        )
    return streams


def _per_sample(x: Tensor, batch_dim: int, sample: Callable[..., Tensor]) -> Tensor:
    streams = _active_for(x, batch_dim)
    shape = x.shape[:batch_dim] + x.shape[batch_dim + 1 :]
    draws = [sample(shape, generator=g, dtype=x.dtype) for g in streams.generators]
    return torch.stack(draws, dim=batch_dim).to(x.device)


def rand_like(x: Tensor, *, batch_dim: int = 0) -> Tensor:
    """``torch.rand_like(x)``, or per-sample draws inside :func:`sample_streams`."""
    if _ACTIVE.get() is None:
        return torch.rand_like(x)
    return _per_sample(x, batch_dim, torch.rand)


def randn_like(x: Tensor, *, batch_dim: int = 0) -> Tensor:
    """``torch.randn_like(x)``, or per-sample draws inside :func:`sample_streams`."""
    if _ACTIVE.get() is None:
        return torch.randn_like(x)
    return _per_sample(x, batch_dim, torch.randn)


def randint(x: Tensor, high: int, *, batch_dim: int = 0) -> Tensor:
    """``torch.randint(0, high, (1,))`` (int64, CPU), or inside :func:`sample_streams` one draw per
    sample of ``x``'s batch dimension from that sample's stream (``[n]``): keys for counter-based
    generators (:mod:`spikeshield.kernels.philox`)."""
    if _ACTIVE.get() is None:
        return torch.randint(0, high, (1,))
    generators = _active_for(x, batch_dim).generators
    return torch.cat([torch.randint(0, high, (1,), generator=g) for g in generators])
