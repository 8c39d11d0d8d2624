"""Format-version-1 files written by spikeshield's own safetensors encoder, kept as fixtures.

Up to main at commit 61270ec spikeshield wrote safetensors bytes with a hand-written encoder;
since then the ``safetensors`` package writes them. The files in ``fixtures/`` are that old
encoder's output, made once with

    PYTHONPATH=<a checkout of 61270ec>/src python -m tests.training.v1_checkpoints

from the repository root, so that the tests prove every file saved by earlier versions still
loads, with its metadata, bit for bit. The contents are deterministic (no training, no random
initialisation), so a test can rebuild what each file must contain.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from spikeshield.training import TrainConfig, build_model_for, save_model, save_tensors
from spikeshield.training.trainer import RunState, make_optimizer, save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
TENSORS = FIXTURES / "v1-tensors.safetensors"
MODEL = FIXTURES / "v1-model.safetensors"
CHECKPOINT = FIXTURES / "v1-checkpoint.safetensors"
METADATA = {"note": "written by the hand-written encoder", "unicode": "σ ε → ✓"}
RUN_STATE = RunState(
    epoch=1, history=[{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.25}], train_seconds=1.5
)

DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.uint8,
    torch.bool,
    torch.int8,
]


def every_dtype() -> dict[str, Tensor]:
    """One 3×5 tensor per dtype, a 0-d scalar and an empty tensor."""
    g = torch.Generator().manual_seed(0)
    out = {f"t_{str(d).split('.')[-1]}": (torch.rand(3, 5, generator=g) * 100).to(d) for d in DTYPES}
    out["scalar"] = torch.tensor(3.5)
    out["empty"] = torch.empty(0, 4)
    return out


def config() -> TrainConfig:
    return TrainConfig(dataset="digits", model="mlp", model_options={"hidden": [8]}, time_steps=2)


def patterned_model() -> torch.nn.Module:
    """The fixture's model with every float entry set to a ramp (not a random initialisation)."""
    model = build_model_for(config())
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.linspace(-1.0, 1.0, value.numel()).reshape(value.shape))
            else:
                value.fill_(7)
    return model


def after_one_step() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The patterned model after one optimizer step on ramp gradients (so Adam has state)."""
    model = patterned_model()
    optimizer = make_optimizer(config(), model)
    for p in model.parameters():
        p.grad = torch.linspace(0.5, -0.5, p.numel()).reshape(p.shape)
    optimizer.step()
    return model, optimizer


def write(folder: Path = FIXTURES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / TENSORS.name, every_dtype(), METADATA)
    model = patterned_model()
    save_model(folder / MODEL.name, model, model.spec)
    model, optimizer = after_one_step()
    save_checkpoint(folder / CHECKPOINT.name, model, optimizer, RUN_STATE, config())


if __name__ == "__main__":
    write()
