import pytest
import torch

from spikeshield.errors import UsageError
from spikeshield.models import MODELS, build_model, model_from_spec
from spikeshield.neurons import NEURONS, SpikingNeuron


def options_for(neuron: str) -> dict:
    return {"noise_in_eval": False} if neuron == "noisy-if" else {}


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_every_model_runs_forward_and_backward(name, shape):
    model = build_model(name, neuron="lif", input_shape=shape, time_steps=2, num_classes=7)
    x = torch.rand(3, *shape, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 7)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("neuron", NEURONS.names())
def test_every_neuron_plugs_into_models(neuron):
    model = build_model(
        "cnn", neuron=neuron, neuron_options=options_for(neuron), input_shape=(1, 8, 8), time_steps=3
    )
    assert sum(isinstance(m, SpikingNeuron) for m in model.modules()) == 2
    assert all(m.name == neuron for m in model.modules() if isinstance(m, SpikingNeuron))
    model(torch.rand(2, 1, 8, 8)).sum().backward()


def test_known_layer_shapes():
    cnn = build_model("cnn", input_shape=(1, 28, 28))
    assert cnn.head[0].in_features == 32 * 7 * 7  # conv32-conv32-fc
    vgg = build_model("vgg11", input_shape=(3, 32, 32), time_steps=1)
    linears = [m for m in vgg.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8192, 4096), (4096, 4096), (4096, 10)]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg.modules()) == 8
    res = build_model("resnet19", input_shape=(3, 32, 32), time_steps=1)
    convs = [m for m in res.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # stem + 8 blocks × 2; + 2 linear = 19 weight layers
    wrn = build_model("wrn16", input_shape=(3, 32, 32), time_steps=1)
    convs = [m for m in wrn.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 13 and max(m.out_channels for m in convs) == 256  # 64·width


@pytest.mark.parametrize("training", [False, True])
def test_direct_encoding_computes_the_stem_once_with_identical_result(training):
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 8, 8), time_steps=4, normalize=((0.3,), (0.4,))).train(
        training
    )
    x = torch.rand(5, 1, 8, 8)
    fast = model(x)
    # reference: repeat the image T times and run every layer on every step (batch norm sees
    # T identical copies, so its batch statistics are the same)
    seq = x.unsqueeze(0).expand(4, *x.shape).reshape(20, 1, 8, 8)
    y = model.stem((seq - model.norm_mean) / model.norm_std).reshape(4, 5, 32, 8, 8)
    slow = model.head(model.body(y)).mean(0)
    torch.testing.assert_close(fast, slow)


def test_no_state_leaks_between_calls_and_samples_are_independent():
    model = build_model("cnn", input_shape=(1, 8, 8), time_steps=4).eval()
    x = torch.rand(6, 1, 8, 8)
    a = model(x)
    assert torch.equal(model(x), a)
    one_by_one = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(one_by_one, a, atol=1e-5, rtol=1e-5)


def test_voting_readout_gives_rates_in_unit_interval():
    model = build_model("mlp", input_shape=(1, 8, 8), readout="voting", voters=5, time_steps=4)
    assert model.head[0].out_features == 50
    out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10) and out.min() >= 0 and out.max() <= 1
    # rates are multiples of 1/(T·voters)
    torch.testing.assert_close(out * 20, (out * 20).round())


def test_poisson_encoder_rates_and_straight_through_gradient():
    model = build_model("mlp", input_shape=(1, 8, 8), encoder="poisson", time_steps=8)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0
    from spikeshield.models import poisson_encode

    p = torch.tensor([0.0, 0.25, 0.9, 1.0])
    rates = poisson_encode(p.expand(20000, 4), 1).mean(dim=(0, 1))
    torch.testing.assert_close(rates, p, atol=0.015, rtol=0)


def test_event_encoder_takes_time_from_the_input():
    model = build_model("cnn", input_shape=(2, 34, 34), encoder="events", time_steps=5)
    assert model(torch.rand(2, 5, 2, 34, 34)).shape == (2, 10)
    with pytest.raises(UsageError, match=r"\[B, 5, 2, 34, 34\]"):
        model(torch.rand(2, 4, 2, 34, 34))


def test_normalisation_inside_the_model():
    model = build_model("cnn", input_shape=(3, 8, 8), normalize=((0.5, 0.4, 0.3), (0.2, 0.2, 0.2)))
    assert model.norm_mean.view(-1).tolist() == pytest.approx([0.5, 0.4, 0.3])
    with pytest.raises(UsageError, match="3 means"):
        build_model("cnn", input_shape=(3, 8, 8), normalize=((0.5,), (0.2,)))


def test_spec_roundtrip_rebuilds_identical_architecture():
    model = build_model(
        "mlp", neuron="klif", neuron_options={"k_init": 2.0}, input_shape=(1, 8, 8), hidden=[32], time_steps=3
    )
    again = model_from_spec(model.spec)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    assert again.spec == model.spec


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": "cnnn"}, "did you mean 'cnn'"),
        ({"name": "cnn", "neuron": "lfi"}, "did you mean 'lif'"),
        ({"name": "cnn", "time_steps": 0}, "positive integer"),
        ({"name": "cnn", "readout": "max"}, "unknown readout"),
        ({"name": "cnn", "encoder": "rate"}, "unknown encoder"),
        ({"name": "cnn", "encoder": "poisson", "normalize": ((0.5,), (0.2,))}, "poisson"),
        ({"name": "cnn", "depth": 3}, "does not take option.*depth"),
        ({"name": "cnn", "num_classes": 1}, "num_classes"),
        ({"name": "cnn", "input_shape": (28, 28)}, r"\(C, H, W\)"),
        ({"name": "cnn", "neuron": "lif", "neuron_options": {"tau": 0.5}}, "tau must be > 1"),
        # sizes of zero or less were torch's RuntimeError ("internal error") (new-user trial)
        ({"name": "cnn", "channels": 0}, "channels must be a positive integer, got 0"),
        ({"name": "cnn", "fc_hidden": -1}, "fc_hidden must be a non-negative integer, got -1"),
        ({"name": "mlp", "hidden": 0}, r"hidden sizes must be positive integers \(a list"),
        ({"name": "mlp", "hidden": [64, 0]}, "hidden sizes must be positive integers"),
        ({"name": "vgg5", "fc_hidden": 0}, "fc_hidden must be a positive integer, got 0"),
    ],
)
def test_bad_model_arguments_are_clear(kwargs, message):
    name = kwargs.pop("name")
    kwargs.setdefault("input_shape", (1, 8, 8))
    with pytest.raises(UsageError, match=f"(?i){message}"):
        build_model(name, **kwargs)


def test_wrong_input_shape_is_a_clear_error():
    model = build_model("cnn", input_shape=(1, 28, 28))
    with pytest.raises(UsageError, match=r"\[B, 1, 28, 28\].*\[4, 3, 28, 28\]"):
        model(torch.rand(4, 3, 28, 28))


def test_a_forward_replaced_on_a_neuron_is_honoured_where_neuron_and_pool_fuse():
    """The BPTR attacker gradient replaces each neuron's forward on the instance; in cnn the
    neuron + max-pool fusion must not bypass it (it did: BPTR silently became BPTT)."""
    from spikeshield.attacks.gradient import attacker_gradient, resolve_gradient
    from spikeshield.kernels import reference_only

    torch.manual_seed(0)
    model = build_model("cnn", neuron="if", input_shape=(1, 8, 8), time_steps=4).eval()
    x = torch.rand(4, 1, 8, 8)

    def input_gradient(gradient: str, reference: bool = False) -> torch.Tensor:
        xx = x.clone().requires_grad_()
        with attacker_gradient(model, resolve_gradient(gradient, model).members[0]):
            if reference:
                with reference_only():
                    model(xx).sum().backward()
            else:
                model(xx).sum().backward()
        return xx.grad

    bptr = input_gradient("bptr")
    torch.testing.assert_close(bptr, input_gradient("bptr", reference=True))
    assert not torch.equal(bptr, input_gradient("bptt"))
