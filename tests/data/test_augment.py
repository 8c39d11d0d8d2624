import pytest
import torch
import torch.nn.functional as F

from spikeshield.data.augment import (
    Cutout,
    HorizontalFlip,
    RandomCrop,
    build_augmentation,
    normalize,
    parse_augmentation,
)
from spikeshield.errors import UsageError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_matches_a_per_image_reference():
    x = torch.rand(16, 3, 8, 8)
    out = RandomCrop(2)(x, _gen(3))
    offsets = torch.randint(0, 5, (2, 16), generator=_gen(3))  # the same draw the transform made
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        dy, dx = offsets[:, i].tolist()
        assert torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
    # some crops moved the image (zero borders appear), and the shape is kept
    assert out.shape == x.shape and (out == 0).any()


def test_flip_and_probability():
    x = torch.arange(2 * 64 * 4, dtype=torch.float32).view(64 * 2, 1, 2, 2)
    out = HorizontalFlip(0.5)(x, _gen(0))
    flipped = (out != x).flatten(1).any(1)
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and torch.equal(out[~flipped], x[~flipped])
    assert 0.3 < flipped.float().mean() < 0.7
    assert torch.equal(HorizontalFlip(1.0)(x, _gen(0)), x.flip(-1))


def test_cutout_square_fill_and_border_clipping():
    x = torch.ones(200, 3, 10, 10)
    out = Cutout(4, fill=(0.1, 0.2, 0.3))(x, _gen(1))
    holes = out[:, 0] != 1
    sizes = holes.flatten(1).sum(1)
    assert sizes.max() == 16 and sizes.min() >= 4  # a full 4×4 square, or clipped at a corner
    assert torch.allclose(out[:, 2][out[:, 2] != 1], torch.tensor(0.3))
    # every hole is one axis-aligned rectangle
    for i in range(20):
        rows = holes[i].any(1).nonzero().flatten()
        cols = holes[i].any(0).nonzero().flatten()
        assert holes[i].sum() == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
    zero = Cutout(3)(torch.ones(4, 2, 6, 6), _gen(2))
    assert (zero == 0).flatten(1).sum(1).min() >= 2 * 2 * 2


def test_event_frames_get_one_crop_and_flip_per_sample():
    frames = torch.rand(8, 5, 2, 12, 12)
    aug = build_augmentation(["crop:3", "flip", "cutout:4"])
    out = aug(frames, _gen(4))
    assert out.shape == frames.shape
    # the same spatial transform for every frame of a sample: apply it to a stack where all
    # frames are equal, and the frames stay equal
    same = frames[:, :1].expand(-1, 5, -1, -1, -1).contiguous()
    out = aug(same, _gen(4))
    assert torch.equal(out, out[:, :1].expand_as(out))


def test_seeded_and_device_independent():
    x = torch.rand(32, 3, 16, 16)
    aug = build_augmentation(["crop:4", "flip", "cutout:8"], fill=(0.5, 0.5, 0.5))
    assert torch.equal(aug(x, _gen(7)), aug(x, _gen(7)))
    assert not torch.equal(aug(x, _gen(7)), aug(x, _gen(8)))
    if torch.cuda.is_available():  # the same numbers on the GPU: parameters come from the CPU generator
        assert torch.allclose(aug(x.cuda(), _gen(7)).cpu(), aug(x, _gen(7)))


def test_normalize():
    x = torch.rand(4, 3, 5, 5)
    out = normalize(x, (0.1, 0.2, 0.3), (0.5, 0.5, 0.25))
    assert torch.allclose(out[:, 2], (x[:, 2] - 0.3) / 0.25)
    with pytest.raises(UsageError, match="normalize needs 3 means and stds"):
        normalize(x, (0.1,), (1.0,))


@pytest.mark.parametrize(
    "spec,message",
    [
        ("rotate:10", "unknown augmentation 'rotate:10'; choose from crop:PADDING"),
        ("crop:0", "crop padding must be >= 1"),
        ("crop:two", "'two' is not an integer"),
        ("flip:1.5", r"flip probability must be in \(0, 1\]"),
        ("cutout", "give the square's side"),
        ("cutout:-2", "cutout size must be >= 1"),
    ],
)
def test_bad_specs_are_clear(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_augmentation(spec)
