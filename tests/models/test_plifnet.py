"""The PLIF paper's networks (Fang et al., ICCV 2021): layouts, shapes and the shared dropout mask."""

import pytest
import torch
from torch import nn

from spikeshield.data import DATASETS, dataset_info
from spikeshield.data.downsample import frame_shape
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.models.layers import SequenceDropout
from spikeshield.neurons import SpikingNeuron


def _linears(model):
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _build(shape, events, neuron="klif", **options):
    return build_model(
        "plifnet",
        neuron=neuron,
        input_shape=shape,
        time_steps=2,
        encoder="events" if events else "direct",
        readout="voting",
        num_classes=options.pop("num_classes", 10),
        **options,
    )


@pytest.mark.parametrize(
    ("shape", "events", "convs", "linears"),
    [
        # MNIST / Fashion-MNIST: {c128-BN-neuron-MP2} x2, FC 6272 -> 2048, 100 voters
        ((1, 28, 28), False, 2, [(128 * 7 * 7, 2048), (2048, 100)]),
        # CIFAR-10: {{c256-BN-neuron} x3 - MP2} x2, FC 16384 -> 2048
        ((3, 32, 32), False, 6, [(256 * 8 * 8, 2048), (2048, 100)]),
        # N-MNIST: 2 blocks on 34x34 -> 8x8, FC c·h·w -> c·h·w/4
        ((2, 34, 34), True, 2, [(128 * 8 * 8, 2048), (2048, 100)]),
        # CIFAR10-DVS: 4 blocks on 128x128 -> 8x8
        ((2, 128, 128), True, 4, [(128 * 8 * 8, 2048), (2048, 100)]),
    ],
)
def test_paper_layouts(shape, events, convs, linears):
    model = _build(shape, events)
    assert len(_convs(model)) == convs
    assert _linears(model) == linears
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    hidden = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert hidden.bias is None  # the paper's FCs have no bias (the shared readout head has one)
    dropouts = [m for m in model.modules() if isinstance(m, SequenceDropout)]
    assert [d.p for d in dropouts] == ([0.5] if shape[0] == 3 else [0.5, 0.5])
    assert sum(isinstance(m, SpikingNeuron) for m in model.modules()) == convs + 2
    assert all(isinstance(m, nn.MaxPool2d) for m in model.modules() if "Pool" in type(m).__name__)


def test_gesture_net_has_five_blocks_and_512_hidden():
    model = _build((2, 128, 128), True, blocks=5, num_classes=11)
    assert len(_convs(model)) == 5
    assert _linears(model) == [(128 * 4 * 4, 512), (512, 110)]


@pytest.mark.parametrize("name", DATASETS.names())
@pytest.mark.parametrize("size", [None, 64, 48, 32, 16])
def test_builds_and_runs_for_every_dataset_shape(name, size):
    info = dataset_info(name)
    if size is not None and (info.kind != "events" or size > info.input_shape[1]):
        pytest.skip("down-sampling is for event frames, to a smaller size")
    shape = frame_shape(info, {"frame_size": size} if size else {})
    events = info.kind == "events"
    model = _build(shape, events, channels=4, num_classes=info.num_classes)
    x = torch.rand(2, 2, *shape) * 3 if events else torch.rand(2, *shape)
    out = model(x)
    assert out.shape == (2, info.num_classes)
    assert ((out >= 0) & (out <= 1)).all()  # voting rates
    out.sum().backward()


@pytest.mark.parametrize(("size", "blocks"), [(34, 2), (128, 4), (64, 3), (48, 3), (32, 2), (8, 1)])
def test_dvs_blocks_pool_until_at_most_8_wide(size, blocks):
    assert len(_convs(_build((2, size, size), True, channels=2))) == blocks


def test_narrowed_net_scales_its_hidden_layer():
    assert _linears(_build((1, 28, 28), False, channels=16))[0] == (16 * 7 * 7, 16 * 16)
    assert _linears(_build((3, 32, 32), False, channels=16))[0] == (16 * 8 * 8, 8 * 16)
    assert _linears(_build((1, 28, 28), False, channels=16, fc_hidden=64))[0] == (16 * 7 * 7, 64)


def test_sequence_dropout_shares_its_mask_over_time():
    drop = SequenceDropout(0.5).train()
    torch.manual_seed(0)
    y = drop(torch.ones(6, 4, 100))
    assert torch.equal(y, y[:1].expand_as(y))  # the same units at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1 − p)
    assert 0.3 < (y[0] == 0).float().mean() < 0.7
    x = torch.rand(3, 2, 5)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layout": "vgg"}, "layout must be auto or one of"),
        ({"pool": "min"}, "pool must be 'max' or 'avg'"),
        ({"channels": 0}, "channels must be"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"blocks": 6}, "6 pooling blocks need inputs of at least 64 pixels"),
    ],
)
def test_bad_options_are_clear(options, message):
    with pytest.raises(UsageError, match=message):
        _build((1, 28, 28), False, **options)


def test_auto_layout_needs_a_known_channel_count():
    with pytest.raises(UsageError, match="no paper layout for 4-channel input"):
        _build((4, 16, 16), False)
    assert len(_convs(_build((4, 16, 16), False, layout="cifar10", channels=2))) == 6
