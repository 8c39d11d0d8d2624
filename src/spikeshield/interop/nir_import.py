"""Import a NIR graph as a :class:`~spikeshield.models.SpikingModel` (:func:`read_nir`, :func:`from_nir`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikeshield.errors import UsageError
from spikeshield.interop._nir import NIRError, close, require_nir, uniform
from spikeshield.interop.neuron_map import neuron_from_nir
from spikeshield.interop.nir_export import MAX_POOL, ROLE
from spikeshield.models import Backbone, SpikingModel
from spikeshield.models.encoders import ENCODERS, Encoder
from spikeshield.models.layers import TimeDistributed
from spikeshield.neurons import SpikingNeuron
from spikeshield.validate import positive

SUPPORTED = "Affine, Linear, Conv2d, Flatten, SumPool2d, AvgPool2d, IF and LIF"


class SumPool2d(nn.Module):
    """NIR's ``SumPool2d``: the sum over each window (zero padding), ``[B, C, H, W]``."""

    def __init__(
        self, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, divisor_override=1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def read_nir(path: str | os.PathLike[str]) -> Any:
    """Read a NIR file (HDF5) into a ``nir.NIRGraph``, checking its types.

    Raises:
        NIRError: the file is missing, not HDF5, not a NIR graph, or its shapes do not match.
    """
    nir = require_nir()
    p = Path(path)
    if not p.is_file():
        raise NIRError(f"NIR file not found: {p}")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        raise NIRError(f"{p} is not a NIR file (NIR files are HDF5; this one does not start like one)")
    try:
        graph = nir.read(p)
    except Exception as exc:  # nir raises KeyError / ValueError / AssertionError on bad content
        raise NIRError(f"{p} is not a valid NIR graph: {_one_line(exc)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"{p} holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


def _chain(graph: Any) -> list[tuple[str, Any]]:
    """The nodes between the one Input and the one Output, which must form a chain."""
    nir = require_nir()
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(
            f"graph has {len(inputs)} inputs and {len(outputs)} outputs; spikeshield imports one of each"
        )
    successors: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for src, dst in graph.edges:
        if src not in successors or dst not in successors:
            raise NIRError(f"edge ({src!r}, {dst!r}) names a node the graph does not have")
        successors[src].append(dst)
    order, name = [], inputs[0]
    while name != outputs[0]:
        nxt = successors[name]
        if len(nxt) != 1 or nxt[0] in order:
            raise NIRError(
                f"node {name!r} has {len(nxt)} successors or closes a loop; spikeshield imports "
                "feed-forward chains only (no branches, no recurrence)"
            )
        name = nxt[0]
        order.append(name)
    if len(order) + 1 != len(graph.nodes) or len(graph.edges) != len(order):
        raise NIRError("graph has nodes or edges off the path from its input to its output")
    return [(k, graph.nodes[k]) for k in order[:-1]]


def _param(array: Any, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.asarray(array)).to(dtype).clone())


def _linear(node: Any, dtype: torch.dtype) -> nn.Linear:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise NIRError(f"Affine/Linear weight must be 2-D, got shape {weight.shape}")
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight = _param(weight, dtype)
    bias = getattr(node, "bias", None)
    layer.bias = _param(np.zeros(weight.shape[0]) if bias is None else bias, dtype)
    return layer


def _conv(node: Any, dtype: torch.dtype) -> nn.Conv2d:
    weight = np.asarray(node.weight)
    padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.ravel(node.padding))
    layer = nn.Conv2d(
        weight.shape[1] * int(node.groups),
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=tuple(int(s) for s in np.ravel(node.stride)),
        padding=padding,
        dilation=tuple(int(d) for d in np.ravel(node.dilation)),
        groups=int(node.groups),
    )
    layer.weight = _param(weight, dtype)
    layer.bias = _param(node.bias, dtype)
    return layer


def _pool_args(node: Any) -> tuple[tuple[int, int], ...]:
    return tuple(
        tuple(int(v) for v in np.broadcast_to(np.ravel(a), 2))
        for a in (node.kernel_size, node.stride, node.padding)
    )


def _is_max_pool(chain: list[tuple[str, Any]], i: int, spikes: bool, dt: float) -> bool:
    """A SumPool2d and IF pair written by :func:`to_nir` for a max pool of spikes (checked)."""
    nir = require_nir()
    if i + 1 >= len(chain) or not spikes:
        return False
    (_, pool), (name, nxt) = chain[i], chain[i + 1]
    marked = all((getattr(n, "metadata", None) or {}).get(ROLE) == MAX_POOL for n in (pool, nxt))
    if not marked or not isinstance(pool, nir.SumPool2d) or not isinstance(nxt, nir.IF):
        return False
    vth = uniform(nxt.v_threshold, "v_threshold", name)
    return (
        close(uniform(nxt.r, "r", name) * dt, 1.0)
        and uniform(nxt.v_reset, "v_reset", name) == 0
        and 0 < vth < 1
    )


def _module(name: str, node: Any, dt: float, dtype: torch.dtype) -> nn.Module:
    nir = require_nir()
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _linear(node, dtype)
    if isinstance(node, nir.Conv2d):
        return _conv(node, dtype)
    if isinstance(node, nir.Flatten):
        end = int(node.end_dim)
        return nn.Flatten(int(node.start_dim) + 1, end + 1 if end >= 0 else end)
    if isinstance(node, nir.SumPool2d):
        return SumPool2d(*_pool_args(node))
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(*_pool_args(node))
    if isinstance(node, (nir.IF, nir.LIF)):
        return neuron_from_nir(node, dt, name)
    raise NIRError(
        f"node {name!r} ({type(node).__name__}) is not supported: spikeshield imports {SUPPORTED} chains"
    )


def _declared_input(node: Any) -> tuple[int, ...] | None:
    declared = (getattr(node, "input_type", None) or {}).get("input")
    if declared is None or np.size(declared) == 0:
        return None
    return tuple(int(v) for v in np.ravel(declared))


class _Probe:
    """Runs a zero tensor through the imported layers to check every shape against the graph."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.x = torch.zeros(1, *shape, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def step(self, name: str, node: Any, module: nn.Module) -> None:
        if isinstance(module, SpikingNeuron):  # parameters: one per neuron, or one for all
            size = np.size(node.v_threshold)
            if size not in (1, int(np.prod(self.shape))):
                raise NIRError(
                    f"node {name!r}: shape mismatch: {size} neurons for an input of shape {list(self.shape)}"
                )
            return
        declared = _declared_input(node)
        if declared is not None and declared != self.shape:
            raise NIRError(
                f"node {name!r}: shape mismatch: it declares input {list(declared)}, gets {list(self.shape)}"
            )
        try:
            with torch.no_grad():
                self.x = module(self.x)
        except RuntimeError as exc:
            raise NIRError(f"node {name!r}: shape mismatch: {_one_line(exc)}") from None


def _weights_dtype(chain: list[tuple[str, Any]]) -> torch.dtype:
    arrays = [np.asarray(n.weight) for _, n in chain if hasattr(n, "weight")]
    return torch.float64 if arrays and all(a.dtype == np.float64 for a in arrays) else torch.float32


def _modules(chain: list[tuple[str, Any]], input_shape: tuple[int, ...], dt: float) -> list[nn.Module]:
    dtype = _weights_dtype(chain)
    probe, modules, spikes, i = _Probe(input_shape, dtype), [], False, 0
    while i < len(chain):
        name, node = chain[i]
        if _is_max_pool(chain, i, spikes, dt):
            module: nn.Module = nn.MaxPool2d(*_pool_args(node))
            i += 1  # the IF of the pair is part of the max pool
        else:
            module = _module(name, node, dt, dtype)
            spikes = isinstance(module, SpikingNeuron) or (spikes and isinstance(module, nn.Flatten))
        probe.step(name, node, module)
        modules.append(module)
        i += 1
    return modules


def _group(modules: list[nn.Module]) -> nn.Sequential:
    """Neurons as they are; runs of stateless layers wrapped to act on every time step."""
    body: list[nn.Module] = []
    run: list[nn.Module] = []
    for m in modules:
        if isinstance(m, SpikingNeuron):
            if run:
                body.append(TimeDistributed(*run))
                run = []
            body.append(m)
        else:
            run.append(m)
    if run:
        body.append(TimeDistributed(*run))
    return nn.Sequential(*body)


def _setting(meta: dict[str, Any], key: str, given: Any, what: str) -> Any:
    if given is not None:
        return given
    if key in meta:
        value = meta[key]
        return value.item() if hasattr(value, "item") else value
    raise UsageError(f"this NIR graph does not record its {what}: pass {key}= to from_nir")


def _split(modules: list[nn.Module]) -> tuple[int, int, bool]:
    """Index of the first neuron, index of the readout Linear, and whether a neuron follows it."""
    first = next((i for i, m in enumerate(modules) if isinstance(m, SpikingNeuron)), None)
    if first is None:
        raise NIRError("graph has no IF or LIF neuron: it is not a spiking network")
    voting = isinstance(modules[-1], SpikingNeuron)
    head = len(modules) - (2 if voting else 1)
    if head <= first or not isinstance(modules[head], nn.Linear):
        raise NIRError(
            "graph must end with an Affine/Linear readout (then optionally one neuron layer), "
            "after its first neuron"
        )
    return first, head, voting


def from_nir(
    graph: Any,
    *,
    dt: float | None = None,
    time_steps: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> SpikingModel:
    """A spikeshield model (evaluation mode) from a NIR graph or file, for attacks and evaluation.

    The graph must be a chain ``Input → [Affine | Linear | Conv2d | Flatten | SumPool2d |
    AvgPool2d | IF | LIF]* → Output`` with at least one neuron and a final Affine/Linear readout,
    optionally followed by one neuron layer (read out as spike rates: the ``voting`` readout).
    Neurons map by :func:`spikeshield.interop.neuron_map.neuron_from_nir`. Layers before the
    first neuron form the model's stem, the final Affine its readout. Weights keep the file's
    precision (float64 files give a float64 model).

    Args:
        graph: a ``nir.NIRGraph`` or the path of a ``.nir`` file.
        dt: the simulation step NIR's time constants are measured against; default: the ``dt`` the
            graph's metadata records (spikeshield writes it; snnTorch 1.0 assumes 1e-4, Norse 1.1
            takes it as an argument, default 1e-3).
        time_steps: T; default: the graph's ``time_steps`` metadata.
        input_shape: the model's input shape when it differs from the graph's: a flat graph input
            (e.g. 784) may be given as (1, 28, 28), and a Flatten is prepended.

    Raises:
        NIRError: bad file (see :func:`read_nir`), unsupported node, branching graph, shape
            mismatch, a neuron spikeshield cannot express.
        UsageError: dt or time_steps missing or invalid.
    """
    nir = require_nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = read_nir(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise UsageError(f"from_nir needs a nir.NIRGraph or a file path, got {type(graph).__name__}")
    meta = dict(graph.metadata or {})
    dt = float(_setting(meta, "dt", dt, "time step"))
    positive("dt", dt)
    time_steps = int(_setting(meta, "time_steps", time_steps, "number of time steps"))
    encoder = str(meta.get("encoder", "direct"))
    if encoder not in ENCODERS:
        raise NIRError(f"graph metadata names an unknown encoder {encoder!r}")
    chain = _chain(graph)
    (in_name, in_node) = next((k, n) for k, n in graph.nodes.items() if isinstance(n, nir.Input))
    graph_shape = _declared_input(in_node)
    if graph_shape is None:
        raise NIRError(f"input node {in_name!r} declares no shape")
    modules = _modules(chain, graph_shape, dt)
    first, head, voting = _split(modules)
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else graph_shape
    stem = modules[:first]
    if shape != graph_shape:
        if len(graph_shape) != 1 or int(np.prod(shape)) != graph_shape[0]:
            raise UsageError(f"input_shape {list(shape)} does not fit the graph's input {list(graph_shape)}")
        stem = [nn.Flatten(), *stem]
    return _assemble(modules, stem, first, head, voting, shape, meta, time_steps, encoder, dt)


def _assemble(
    modules: list[nn.Module],
    stem: list[nn.Module],
    first: int,
    head: int,
    voting: bool,
    shape: tuple[int, ...],
    meta: dict[str, Any],
    time_steps: int,
    encoder: str,
    dt: float,
) -> SpikingModel:
    linear: nn.Linear = modules[head]  # type: ignore[assignment]
    voters = int(meta.get("voters", 1)) if voting else 1
    if linear.out_features % voters:
        raise NIRError(f"readout has {linear.out_features} outputs, not a multiple of {voters} voters")
    head_neuron = modules[-1] if voting else None
    normalize = None
    if "input_normalize_mean" in meta:
        normalize = (
            [float(v) for v in np.ravel(meta["input_normalize_mean"])],
            [float(v) for v in np.ravel(meta["input_normalize_std"])],
        )
    num_classes = linear.out_features // voters
    spec = {
        "name": "nir",
        "source": str(meta.get("source", "")),
        "dt": dt,
        "time_steps": time_steps,
        "encoder": encoder,
        "readout": "voting" if voting else "mean",
        "voters": voters,
        "num_classes": num_classes,
        "input_shape": list(shape),
    }
    model = SpikingModel(
        Backbone(nn.Sequential(*stem), _group(modules[first:head])),
        features=linear.in_features,
        num_classes=num_classes,
        input_shape=shape,
        encoder=Encoder(encoder, time_steps),
        readout=spec["readout"],
        voters=voters,
        make_neuron=lambda: head_neuron,
        normalize=normalize,
        spec=spec,
    )
    model.head[0] = linear
    model.to(linear.weight.dtype)
    return model.eval()


__all__ = ["SumPool2d", "from_nir", "read_nir"]
