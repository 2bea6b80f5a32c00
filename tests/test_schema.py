"""wantrain/schema.py: typed option fields checked against plain config values, in one line."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from wantrain.schema import OptionError, check_instance, check_options, option


@dataclass
class Inner:
    prob: float = option(0.5, "a share", ge=0, le=1)
    sizes: tuple[int, int] = option((3, 9), "a range", ge=3)


@dataclass
class Outer:
    count: int = option(1, "how many", ge=1)
    mode: str = option("area", "the filter", choices=("area", "bicubic"))
    size: int | list[int] = option(64, "an int or [H, W]", ge=1)
    inner: Inner | None = option(None, "nested")
    anything: dict | None = option(None)

    def __post_init__(self) -> None:
        check_instance(self, "outer")


GOOD = {"count": 3, "mode": "bicubic", "size": [32, 48], "inner": {"prob": 1, "sizes": [3, 5]}, "anything": None,
        "_target_": "x.Y"}


def test_valid_values_pass_with_hydra_keys_and_ints_for_floats() -> None:
    check_options("outer", GOOD, Outer)
    check_options("outer", {"count": "???"}, Outer)  # a mandatory value not set yet is reported where it is read


@pytest.mark.parametrize(("values", "message"), [
    ({"count": "abc"}, "outer.count='abc': expected int - how many"),
    ({"count": True}, "outer.count=True: expected int"),
    ({"count": 0}, "outer.count=0: out of range, use a value >= 1 - how many"),
    ({"mode": "bicubc"}, "outer.mode='bicubc': not allowed (did you mean bicubic?); use one of area, bicubic"),
    ({"size": [32, "x"]}, "outer.size=[32, x]: expected int or a list of int"),
    ({"size": [0, 4]}, "outer.size=[0, 4]: out of range, use a value >= 1"),
    ({"inner": {"prob": 1.5}}, "outer.inner.prob=1.5: out of range, use a value >= 0 and <= 1 - a share"),
    ({"inner": {"sizes": [3, 5, 7]}}, "outer.inner.sizes=[3, 5, 7]: expected [int, int]"),
    ({"inner": {"prb": 1}}, "unknown config key outer.inner.prb: remove it or fix its spelling (did you mean "
                            "outer.inner.prob?); outer.inner takes: prob, sizes"),
    ({"inner": 3}, "outer.inner=3: expected a mapping or null"),
])
def test_a_bad_value_fails_in_one_line_naming_key_value_and_what_is_allowed(values: dict, message: str) -> None:
    with pytest.raises(OptionError) as err:
        check_options("outer", values, Outer)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_python_users_get_the_same_rules_through_post_init() -> None:
    with pytest.raises(OptionError, match=r"outer.count=-2: out of range"):
        Outer(count=-2)
