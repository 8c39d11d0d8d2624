import math
from functools import partial

import pytest

from spikeshield import validate
from spikeshield.errors import UsageError

NOT_NUMBERS = [True, False, None, "1", [1], float("nan"), float("inf"), -math.inf]


@pytest.mark.parametrize(
    ("check", "good", "bad", "message"),
    [
        (validate.positive_int, [1, 7], [0, -1, 1.0, True, "2", None], "n must be a positive integer, got"),
        (validate.non_negative_int, [0, 3], [-1, 0.0, False, None], "n must be a non-negative integer, got"),
        (partial(validate.int_at_least, minimum=2), [2, 9], [1, 2.0, True], "n must be an integer >= 2, got"),
    ],
)
def test_integer_checks(check, good, bad, message):
    for value in good:
        assert check("n", value) == value
    for value in bad:
        with pytest.raises(UsageError, match=message):
            check("n", value)


@pytest.mark.parametrize(
    ("check", "good", "bad", "message"),
    [
        (validate.finite, [0, -2, 1.5], [], ""),
        (validate.positive, [1e-9, 3], [0, -1.0], r"x must be > 0, got"),
        (validate.non_negative, [0, 2.5], [-1e-9], r"x must be >= 0, got"),
        (partial(validate.at_least, minimum=1.5), [1.5, 9], [1.4], r"x must be >= 1.5, got"),
        (validate.probability, [0, 0.5, 1], [-0.1, 1.01], r"x must be in \[0, 1\], got"),
        (partial(validate.in_range, low=0, high=1, low_open=True), [1, 0.1], [0, 2], r"be in \(0, 1\]"),
        (partial(validate.in_range, low=0, high=1, high_open=True), [0, 0.9], [1, -1], r"in \[0, 1\)"),
    ],
)
def test_real_number_checks(check, good, bad, message):
    for value in good:
        out = check("x", value)
        assert out == value and isinstance(out, float)
    for value in bad:
        with pytest.raises(UsageError, match=message):
            check("x", value)
    for value in NOT_NUMBERS:  # a bool, a string, NaN or infinity is never a number here
        with pytest.raises(UsageError, match="x must be a finite number, got"):
            check("x", value)


def test_boolean():
    assert validate.boolean("flag", True) is True and validate.boolean("flag", False) is False
    for value in (0, 1, "true", None):
        with pytest.raises(UsageError, match="flag must be true or false, got"):
            validate.boolean("flag", value)


def test_reject_unknown_names_the_strays_and_what_is_taken():
    validate.reject_unknown("neuron 'lif'", {"tau": 2}, ["tau", "v_threshold"])
    validate.reject_unknown("dataset 'digits'", {}, [])
    given = {"tau": 2, "leak": 1, "v_reset": 0.0}
    with pytest.raises(UsageError) as err:
        validate.reject_unknown("neuron 'if'", given, ("v_threshold", "v_reset"))
    assert str(err.value) == "neuron 'if' does not take option(s) leak, tau; it takes: v_reset, v_threshold"
    with pytest.raises(UsageError) as err:
        validate.reject_unknown("dataset 'digits'", ["frames"], [])
    assert str(err.value) == "dataset 'digits' does not take option(s) frames; it takes: none"
