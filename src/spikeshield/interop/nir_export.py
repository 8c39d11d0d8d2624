"""Export a :class:`~spikeshield.models.SpikingModel` to a NIR graph (:func:`to_nir`, :func:`write_nir`)."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.utils import _pair

import spikeshield
from spikeshield.errors import UsageError
from spikeshield.interop._nir import SOURCE, require_nir
from spikeshield.interop.neuron_map import neuron_to_nir
from spikeshield.io import atomic_write_bytes, ensure_dir
from spikeshield.models import SpikingModel
from spikeshield.models.layers import SequenceDropout
from spikeshield.neurons import SpikingNeuron
from spikeshield.validate import positive

#: metadata key marking the sum-pool and threshold pair that carries a max pool of spikes
ROLE = "spikeshield_role"
MAX_POOL = "max_pool"
_SKIPPED = (nn.Dropout, SequenceDropout, nn.Identity)
"""Layers written as nothing: identities in evaluation mode, which is what NIR describes."""


def _leaves(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in execution order, with their dotted paths (for error messages)."""
    if isinstance(module, SpikingNeuron) or not any(True for _ in module.children()):
        return [(prefix, module)]
    if not isinstance(module, nn.Sequential):
        raise UsageError(
            f"layer {prefix} ({type(module).__name__}) cannot be exported to NIR: only sequential "
            "models are exported (residual blocks branch)"
        )
    return [leaf for name, child in module.named_children() for leaf in _leaves(f"{prefix}.{name}", child)]


def model_layers(model: SpikingModel) -> list[tuple[str, nn.Module]]:
    """``(path, layer)`` of the stem, body, readout Linear and (voting) readout neuron, in order."""
    layers = _leaves("stem", model.stem) + _leaves("body", model.body) + _leaves("head", model.head)
    if model.head_neuron is not None:
        layers.append(("head_neuron", model.head_neuron))
    return [(path, m) for path, m in layers if not isinstance(m, _SKIPPED)]


def fold_batchnorm(layer: nn.Linear | nn.Conv2d, bn: _BatchNorm | None, path: str) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``layer`` followed by ``bn`` in evaluation mode, as one affine layer.

    With ``s = γ / sqrt(running_var + ε)`` per output channel: ``W' = s·W``, ``b' = s·(b − μ) + β``
    (computed in float64, returned in the layer's dtype).
    """
    w = layer.weight.detach().double()
    b = (
        layer.bias.detach().double()
        if layer.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    if bn is not None:
        if bn.running_mean is None or bn.running_var is None:
            raise UsageError(
                f"layer {path} cannot be exported to NIR: its batch norm keeps no running statistics"
            )
        gamma = bn.weight.detach().double() if bn.weight is not None else 1.0
        beta = bn.bias.detach().double() if bn.bias is not None else 0.0
        s = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * torch.as_tensor(s).reshape(-1, *[1] * (w.dim() - 1))
        b = s * (b - bn.running_mean.double()) + beta
    dtype = layer.weight.dtype
    return w.to(dtype), b.to(dtype)


def _array(t: Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()


class _Exporter:
    """Walks the layers once, tracking the shape (no batch axis) and whether the signal is spikes."""

    def __init__(self, model: SpikingModel, dt: float) -> None:
        self.nir = require_nir()
        self.dt = dt
        self.nodes: dict[str, Any] = {}
        self.spikes = False
        weight = next(model.parameters())
        self.x = torch.zeros(1, *model.input_shape, dtype=weight.dtype, device=weight.device)  # shape probe
        self.input_shape = tuple(model.input_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def add(self, kind: str, node: Any) -> None:
        self.nodes[f"{kind}_{len(self.nodes)}"] = node

    def weighted(self, path: str, layer: nn.Module, bn: _BatchNorm | None) -> None:
        w, b = fold_batchnorm(layer, bn, path)
        if isinstance(layer, nn.Linear):
            if len(self.shape) != 1:
                raise UsageError(
                    f"layer {path} cannot be exported to NIR: Affine needs a flat input, got {self.shape}"
                )
            self.add("fc", self.nir.Affine(weight=_array(w), bias=_array(b)))
        else:
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise UsageError(
                    f"layer {path} cannot be exported to NIR: only numeric zero padding is supported"
                )
            self.add(
                "conv",
                self.nir.Conv2d(
                    input_shape=self.shape[1:],
                    weight=_array(w),
                    bias=_array(b),
                    stride=layer.stride,
                    padding=layer.padding,
                    dilation=layer.dilation,
                    groups=layer.groups,
                ),
            )
        self.spikes = False

    def pool(self, path: str, layer: nn.MaxPool2d | nn.AvgPool2d) -> None:
        k, s, p = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size), _pair(layer.padding)
        if layer.ceil_mode:
            raise UsageError(f"layer {path} cannot be exported to NIR: ceil_mode pooling has no NIR form")
        args = {"kernel_size": np.array(k), "stride": np.array(s), "padding": np.array(p)}
        if isinstance(layer, nn.AvgPool2d):
            if any(p) or layer.divisor_override is not None:
                raise UsageError(
                    f"layer {path} cannot be exported to NIR: average pooling with padding or a divisor"
                )
            self.add("avgpool", self.nir.AvgPool2d(**args))
            self.spikes = False
            return
        if not self.spikes or _pair(layer.dilation) != (1, 1):
            raise UsageError(
                f"layer {path} cannot be exported to NIR: NIR has no max pooling; spikeshield writes a max "
                "pool of spikes exactly as a sum pool and a threshold, but this one "
                + ("is dilated" if self.spikes else "pools values that are not spikes")
            )
        # max of 0/1 spikes = 1 iff their sum >= 1: a SumPool2d, then an IF neuron with gain 1
        # (r = 1/dt), threshold 1/2 and reset to 0, whose potential is therefore 0 before each step
        self.add("sumpool", self.nir.SumPool2d(**args, metadata={ROLE: MAX_POOL}))
        self.x = layer(self.x)
        ones = np.ones(self.shape)
        self.add(
            "spike_or",
            self.nir.IF(r=ones / self.dt, v_threshold=ones / 2, v_reset=0 * ones, metadata={ROLE: MAX_POOL}),
        )

    def layer(self, path: str, layer: nn.Module, bn: _BatchNorm | None) -> None:
        if isinstance(layer, SpikingNeuron):
            self.add(layer.name or "neuron", neuron_to_nir(layer, self.shape, self.dt, path))
            self.spikes = True
            return
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            self.weighted(path, layer, bn)
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            self.pool(path, layer)
            if isinstance(layer, nn.MaxPool2d):
                return  # the probe has been pooled already
        elif isinstance(layer, nn.Flatten) and layer.start_dim >= 1:
            # NIR shapes have no batch axis: torch's dimension d is NIR's d − 1
            end = layer.end_dim - 1 if layer.end_dim > 0 else layer.end_dim
            self.add(
                "flatten", self.nir.Flatten(np.array(self.shape), start_dim=layer.start_dim - 1, end_dim=end)
            )
        elif isinstance(layer, _BatchNorm):
            raise UsageError(
                f"layer {path} cannot be exported to NIR: this batch norm follows no Linear or Conv2d "
                "to fold it into, and NIR has no batch-norm node"
            )
        else:
            raise UsageError(f"layer {path} ({type(layer).__name__}) has no NIR counterpart")
        with torch.no_grad():
            self.x = layer(self.x)  # batch norm changes no shape (and must not see training mode)


def _graph_metadata(model: SpikingModel, dt: float) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": SOURCE,
        "spikeshield_version": spikeshield.__version__,
        "dt": dt,
        "time_steps": model.time_steps,
        "encoder": model.encoder.kind,
        "readout": model.readout,
        "voters": model.voters if model.readout == "voting" else 1,
    }
    if model.norm_mean is not None:
        meta["input_normalize_mean"] = model.norm_mean.detach().double().cpu().numpy().ravel()
        meta["input_normalize_std"] = model.norm_std.detach().double().cpu().numpy().ravel()
    return meta


def to_nir(model: SpikingModel, *, dt: float = 1e-3) -> Any:
    """The NIR graph (``nir.NIRGraph``) of a sequential spikeshield model, mapped exactly.

    One spikeshield time step lasts ``dt`` in NIR's time unit (seconds by convention; default
    1 ms). Nodes: Linear → ``Affine``; Conv2d → ``Conv2d``; a following BatchNorm is folded in
    (:func:`fold_batchnorm`); Flatten → ``Flatten`` (dimensions shifted: NIR has no batch axis);
    AvgPool2d → ``AvgPool2d``; MaxPool2d of spikes → ``SumPool2d`` + ``IF`` (exact for 0/1
    spikes); neurons by :mod:`spikeshield.interop.neuron_map`; dropout (``nn.Dropout``,
    :class:`~spikeshield.models.layers.SequenceDropout`, e.g. ``plifnet``'s) is an identity in
    evaluation mode and is left out (a model read back has none). The graph runs one time step
    per call: its input is the (normalised) image at every step for the ``direct`` encoder,
    frame t for ``events``; its output is the readout Linear's logits per step (``mean``
    readout: average them over the T steps) or the voting neurons' spikes.

    Graph metadata (what NIR cannot say, read back by :func:`from_nir`): ``source``,
    ``spikeshield_version``, ``dt``, ``time_steps``, ``encoder``, ``readout``, ``voters`` and, when
    the model normalises its input, ``input_normalize_mean`` / ``input_normalize_std``
    (apply ``(x − mean)/std`` per channel before feeding the graph).

    Raises:
        UsageError: ``dt`` is not a positive number; a layer or neuron has no exact NIR form (the
            message names the layer and the reason); the model branches (residual blocks).
    """
    positive("dt", dt)
    if not isinstance(model, SpikingModel):
        raise UsageError(f"to_nir needs a spikeshield SpikingModel, got {type(model).__name__}")
    exporter = _Exporter(model, float(dt))
    layers = model_layers(model)
    i = 0
    while i < len(layers):
        path, layer = layers[i]
        nxt = layers[i + 1][1] if i + 1 < len(layers) else None
        bn = nxt if isinstance(layer, (nn.Linear, nn.Conv2d)) and isinstance(nxt, _BatchNorm) else None
        exporter.layer(path, layer, bn)
        i += 2 if bn is not None else 1
    nir = exporter.nir
    nodes = {"input": nir.Input(input_type={"input": np.array(exporter.input_shape)})}
    nodes.update(exporter.nodes)
    nodes["output"] = nir.Output(output_type={"output": np.array(exporter.shape)})
    names = list(nodes)
    edges = list(itertools.pairwise(names))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_graph_metadata(model, float(dt)))


def write_nir(graph: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``graph`` to ``path`` (NIR's HDF5 format) atomically; never replaces a file silently.

    Raises:
        UsageError: ``path`` exists and ``overwrite`` is false, or is a folder, or exists and is
            not a NIR file (replaced by no ``overwrite``).
        OutputError: the folder or file cannot be written.
    """
    nir = require_nir()
    target = Path(path)
    _not_a_folder(target)
    _only_a_nir_file(target)
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists; pass --overwrite (overwrite=True) to replace it")
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    ensure_dir(target.parent if str(target.parent) else ".")
    atomic_write_bytes(target, buffer.getvalue())
    return target


def _not_a_folder(target: Path) -> None:
    if target.is_dir():
        raise UsageError(f"{target} is a folder; name the NIR file to write, e.g. {target / 'model.nir'}")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first bytes of an HDF5 file, NIR's format."""


def _not_a_run_file(run_dir: Path, target: Path) -> None:
    """Refuse ``target`` when it is a file of the run being exported (its weights, config, metrics,
    evaluations; by any path or link): only an earlier NIR file there may be replaced."""
    if not target.is_file() or not run_dir.is_dir():
        return
    try:
        with target.open("rb") as fh:
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return
    except OSError:
        pass  # unreadable: compared with the run's files below all the same
    for path in run_dir.rglob("*"):
        if path.is_file() and os.path.samefile(path, target):
            raise UsageError(
                f"{target} is the exported run's own file {path.relative_to(run_dir)}; replacing it "
                "would destroy the run: choose another --out"
            )


def _is_nir_file(path: Path) -> bool:
    """Whether ``path`` is a NIR file: HDF5 (its signature) with NIR's top-level ``node`` group."""
    if not path.is_file():  # a FIFO or a device is never opened (it could block)
        return False
    try:
        with path.open("rb") as fh:
            if fh.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                return False
        import h5py  # NIR's own dependency

        with h5py.File(path, "r") as f:
            return "node" in f
    except Exception:  # unreadable or not HDF5 after all: not a NIR file
        return False


def _only_a_nir_file(target: Path) -> None:
    """Refuse an existing ``target`` that is not a NIR file, even with ``overwrite``: an export
    replaces only an earlier export, never another file (another run's weights, a config)."""
    if not target.exists() or _is_nir_file(target):
        return
    kind = ""
    for folder in list(target.resolve().parents)[:3]:  # a run's file, or one of its evaluations'
        if (folder / "config.json").is_file():
            kind = f" (a file of the run {folder}: {target.resolve().relative_to(folder)})"
            break
    raise UsageError(
        f"{target} exists and is not a NIR file{kind}; export replaces only an earlier NIR file, even "
        "with --overwrite: choose another --out"
    )


def _probe_inputs(model: SpikingModel, count: int = 32) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    if model.encoder.kind == "events":
        shape = (count, model.time_steps, *model.input_shape)
        return (torch.rand(shape, generator=gen) < 0.2).float()
    return torch.rand((count, *model.input_shape), generator=gen)


def export_run(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, dt: float = 1e-3, overwrite: bool = False
) -> dict[str, Any]:
    """``spikeshield export``: write a run folder's trained model as a NIR file, then read the file
    back with :func:`~spikeshield.interop.from_nir` and compare it with the model on 32 random
    inputs. Returns ``{"path", "agree", "inputs", "max_logit_diff"}``.

    Raises:
        UsageError: the run is missing or its model has no exact NIR form; ``out`` exists (and
            ``overwrite`` is false), is a folder, is a file of the run, or exists and is not a NIR
            file (another run's weights: never replaced, ``overwrite`` or not).
        NIRError, OutputError: the file cannot be written or read back.
    """
    from spikeshield.interop.nir_import import from_nir
    from spikeshield.runs import load_model

    positive("dt", dt)
    _not_a_folder(Path(out))
    _not_a_run_file(Path(run_dir), Path(out))
    _only_a_nir_file(Path(out))
    if Path(out).exists() and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it")
    model = load_model(run_dir)
    model.eval()
    path = write_nir(to_nir(model, dt=dt), out, overwrite=overwrite)
    again = from_nir(path)
    x = _probe_inputs(model)
    with torch.no_grad():
        ours, theirs = model(x), again(x)
    return {
        "path": path,
        "agree": int((ours.argmax(1) == theirs.argmax(1)).sum()),
        "inputs": len(x),
        "max_logit_diff": float((ours - theirs).abs().max()),
    }
