"""Evaluations leave no mark on the model they are handed.

:func:`preserved` snapshots a model module by module — every module's attributes (its
``training`` flag, a swapped surrogate, a ``forward`` replaced on the instance, a submodule
replaced), every parameter (value, ``requires_grad``, gradient) and every buffer (batch-norm
running statistics, ``num_batches_tracked``) — and restores all of it when the block ends, also
when it raises. A model whose batch-norm layers were frozen in eval mode inside a model in train
mode keeps exactly that mix: flags are restored per module, never with one model-wide
``model.train(was_training)``.

Every evaluation entry point runs inside it (:func:`~spikeshield.attacks.evaluate_robustness`,
``Attack.perturb``, the :class:`~spikeshield.attacks.Oracle`'s queries,
:func:`~spikeshield.attacks.check_fresh_state`, :func:`~spikeshield.training.predict`). Nested
uses on the same model are free: only the outermost one snapshots and restores.

Limits: attributes are restored by identity, and the contents of dict- and set-valued ones
(``_parameters``, ``_buffers``, ``_modules``, hooks); a list or a plain tensor attribute (not a
parameter or buffer) mutated in place keeps the mutation. Parameters and buffers are cloned once
per outermost block (one copy of the model's weights in memory while it runs).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

_GUARDED: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "spikeshield_preserved", default=frozenset()
)


@dataclass
class _ModuleState:
    module: nn.Module
    attributes: dict[str, Any]
    """A shallow copy of ``module.__dict__`` (identity of every attribute)."""
    contents: dict[str, Any]
    """Shallow copies of the dict- and set-valued attributes (``_parameters``, ``_buffers``,
    hooks ...), whose contents can change while the attribute keeps its identity."""

    @classmethod
    def take(cls, module: nn.Module) -> _ModuleState:
        attributes = dict(module.__dict__)
        contents = {k: v.copy() for k, v in attributes.items() if isinstance(v, (dict, set))}
        return cls(module, attributes, contents)

    def restore(self) -> None:
        current = self.module.__dict__
        for key in [k for k in current if k not in self.attributes]:
            del current[key]
        current.update(self.attributes)
        for key, saved in self.contents.items():
            target = current[key]
            target.clear()
            target.update(saved)


@dataclass
class _TensorState:
    tensor: Tensor
    value: Tensor
    requires_grad: bool
    grad: Tensor | None
    grad_value: Tensor | None

    @classmethod
    def take(cls, tensor: Tensor) -> _TensorState:
        grad = tensor.grad if isinstance(tensor, nn.Parameter) else None
        return cls(
            tensor,
            tensor.detach().clone(),
            tensor.requires_grad,
            grad,
            None if grad is None else grad.detach().clone(),
        )

    def restore(self) -> None:
        with torch.no_grad():
            _put(self.tensor, self.value)
            if self.grad is not None and self.grad_value is not None:
                _put(self.grad, self.grad_value)
        if self.tensor.is_leaf:
            self.tensor.requires_grad_(self.requires_grad)
        if isinstance(self.tensor, nn.Parameter):
            self.tensor.grad = self.grad


def _put(target: Tensor, value: Tensor) -> None:
    if target.shape == value.shape and target.dtype == value.dtype and target.device == value.device:
        target.copy_(value)
    else:
        target.data = value


class Snapshot:
    """The complete state of a model (see the module docstring); :meth:`restore` puts it back."""

    def __init__(self, model: nn.Module) -> None:
        modules = list(model.modules())
        self.modules = [_ModuleState.take(m) for m in modules]
        tensors: dict[int, Tensor] = {}
        for m in modules:
            for t in [*m._parameters.values(), *m._buffers.values()]:
                if t is not None:
                    tensors.setdefault(id(t), t)
        self.tensors = [_TensorState.take(t) for t in tensors.values()]

    def restore(self) -> None:
        for m in self.modules:
            m.restore()
        for t in self.tensors:
            t.restore()


@contextlib.contextmanager
def preserved(*models: nn.Module | None) -> Iterator[None]:
    """Within this block ``models`` may be used in any way; afterwards each is exactly as before.

    Restores every module's attributes and ``training`` flag, every parameter (value,
    ``requires_grad``, gradient) and every buffer, bit for bit — also when the block raises.
    Models already preserved by an enclosing block are left to it.
    """
    guarded = _GUARDED.get()
    fresh = [m for m in dict.fromkeys(models) if m is not None and id(m) not in guarded]
    snapshots = [Snapshot(m) for m in fresh]
    token = _GUARDED.set(guarded | {id(m) for m in fresh})
    try:
        yield
    finally:
        _GUARDED.reset(token)
        for snapshot in snapshots:
            snapshot.restore()
