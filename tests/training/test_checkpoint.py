import pickle

import pytest
import torch

from spikeshield.errors import CheckpointError
from spikeshield.models import build_model
from spikeshield.training.checkpoint import (
    decode_safetensors,
    encode_safetensors,
    load_model_weights,
    load_tensors,
    save_model,
    save_tensors,
)

ALL_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.bool,
    torch.int8,
]


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    out = {f"t_{str(d).split('.')[-1]}": (torch.rand(3, 5, generator=g) * 100).to(d) for d in ALL_DTYPES}
    out["scalar"] = torch.tensor(3.5)
    out["empty"] = torch.empty(0, 4)
    return out


def test_roundtrip_every_dtype(tmp_path):
    tensors = sample_tensors()
    save_tensors(tmp_path / "a.safetensors", tensors, {"note": "hi"})
    back, meta = load_tensors(tmp_path / "a.safetensors")
    assert meta == {"note": "hi"}
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_interchangeable_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    tensors = {k: v for k, v in sample_tensors().items()}
    # ours -> theirs
    (tmp_path / "ours.safetensors").write_bytes(encode_safetensors(tensors, {"a": "b"}))
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(theirs[k], v) for k, v in tensors.items())
    # theirs -> ours
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"x": "y"})
    back, meta = load_tensors(tmp_path / "theirs.safetensors")
    assert meta == {"x": "y"} and all(torch.equal(back[k], v) for k, v in tensors.items())


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


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_truncated_checkpoint_is_clear(tmp_path, cut):
    raw = encode_safetensors({"w": torch.ones(10)})
    with pytest.raises(CheckpointError):
        decode_safetensors(raw[:cut], "x")


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
