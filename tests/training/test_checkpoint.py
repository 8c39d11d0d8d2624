import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from spikeshield.errors import CheckpointError
from spikeshield.models import build_model
from spikeshield.training.checkpoint import load_model_weights, load_tensors, save_model, save_tensors
from spikeshield.training.trainer import build_model_for, load_checkpoint, make_optimizer

from . import v1_checkpoints as v1


def sample_tensors():
    return v1.every_dtype()


def test_roundtrip_every_dtype(tmp_path):
    tensors = sample_tensors()
    save_tensors(tmp_path / "a.safetensors", tensors, {"note": "hi"})
    back, meta = load_tensors(tmp_path / "a.safetensors")
    assert meta == {"note": "hi"}
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_files_are_standard_safetensors(tmp_path):
    tensors = sample_tensors()
    save_tensors(tmp_path / "ours.safetensors", tensors, {"a": "b"})
    with safe_open(str(tmp_path / "ours.safetensors"), framework="pt") as f:
        assert f.metadata() == {"a": "b"}
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
    save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"x": "y"})
    back, meta = load_tensors(tmp_path / "theirs.safetensors")
    assert meta == {"x": "y"} and all(torch.equal(back[k], v) for k, v in tensors.items())


def test_views_and_shared_storage_are_saved_as_values(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    save_tensors(tmp_path / "v.safetensors", {"base": base, "t": base.t(), "row": base[1]})
    back, _ = load_tensors(tmp_path / "v.safetensors")
    assert torch.equal(back["t"], base.t()) and torch.equal(back["row"], base[1])
    back["row"].fill_(-1)  # loaded tensors own their memory
    assert torch.equal(back["base"], torch.arange(12.0).reshape(3, 4))


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/spikeshield-pwned",))


def test_malicious_pickle_is_rejected_without_running(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    marker = "/tmp/spikeshield-pwned"
    import os

    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_tensors(path)
    assert not os.path.exists(marker)
    # a torch.save file (zip of pickles) is rejected the same way
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_tensors(path)


@pytest.mark.parametrize("cut", [0, 4, 20, -3])
def test_truncated_checkpoint_is_clear(tmp_path, cut):
    save_tensors(tmp_path / "whole.safetensors", {"w": torch.ones(10)})
    raw = (tmp_path / "whole.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match=r"cut.safetensors: (too short to be|not) a safetensors file"):
        load_tensors(tmp_path / "cut.safetensors")


def test_weights_for_another_model_are_rejected(tmp_path):
    a = build_model("cnn", neuron="lif", input_shape=(1, 8, 8))
    save_model(tmp_path / "m.safetensors", a, a.spec)
    b = build_model("cnn", neuron="klif", input_shape=(1, 8, 8))
    with pytest.raises(CheckpointError, match="different model.*neuron"):
        load_model_weights(tmp_path / "m.safetensors", b, b.spec)
    c = build_model("cnn", neuron="lif", input_shape=(1, 8, 8), channels=16)
    with pytest.raises(CheckpointError, match="do not fit|different model"):
        load_model_weights(tmp_path / "m.safetensors", c, None)
    same = build_model("cnn", neuron="lif", input_shape=(1, 8, 8))
    load_model_weights(tmp_path / "m.safetensors", same, same.spec)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), same.state_dict().values()))


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tensors(tmp_path / "nope.safetensors")


def same_values(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_files_of_the_hand_written_encoder_still_load():
    """Fixtures written by spikeshield's own encoder before the safetensors package did it."""
    back, meta = load_tensors(v1.TENSORS)
    assert meta == v1.METADATA
    expected = v1.every_dtype()
    assert same_values(back, expected) and all(back[k].dtype == v.dtype for k, v in expected.items())

    config = v1.config()
    model = build_model_for(config)  # a fresh random initialisation, overwritten by the load
    load_model_weights(v1.MODEL, model, model.spec)
    assert same_values(model.state_dict(), v1.patterned_model().state_dict())

    model = build_model_for(config)
    optimizer = make_optimizer(config, model)
    assert load_checkpoint(v1.CHECKPOINT, model, optimizer, config) == v1.RUN_STATE
    want_model, want_optimizer = v1.after_one_step()
    assert same_values(model.state_dict(), want_model.state_dict())
    got, want = optimizer.state_dict(), want_optimizer.state_dict()
    assert json.dumps(got["param_groups"]) == json.dumps(want["param_groups"])
    assert got["state"].keys() == want["state"].keys()
    assert all(same_values(got["state"][i], want["state"][i]) for i in want["state"])
