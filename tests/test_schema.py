"""wantrain/schema.py: typed option fields checked against plain config values, in one line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from wantrain.schema import OptionError, borrowed, check_instance, check_options, doc_of, option


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


@dataclass
class Borrowing:
    many: int | None = borrowed(Outer, "count", "null: keep")
    lazy: str | None = borrowed(lambda: Outer, "mode", "null: keep")
    device: str = option("auto", "where", pattern=(r"auto|cpu|cuda(:\d+)?", "auto, cpu or cuda:N"))
    tile: int | str | None = option("auto", "tiles", ge=1, pattern=("auto", "auto"))
    in_: str | None = option(None, "a key that is a Python keyword")


def test_a_borrowed_field_has_its_sources_doc_and_bounds() -> None:
    many, lazy = dataclasses.fields(Borrowing)[:2]
    assert doc_of(many) == "null: keep; how many (>= 1)"
    assert doc_of(lazy, resolve=False) == "null: keep"  # the lazy source is not imported for help pages
    assert doc_of(lazy) == "null: keep; the filter (one of area, bicubic)"
    check_options("b", {"many": None, "lazy": None}, Borrowing)
    with pytest.raises(OptionError, match=r"^b.many=0: out of range, use a value >= 1 - null: keep; how many$"):
        check_options("b", {"many": 0}, Borrowing)
    with pytest.raises(OptionError, match=r"^b.lazy='bicubc': not allowed \(did you mean bicubic\?\)"):
        check_options("b", {"lazy": "bicubc"}, Borrowing)


@pytest.mark.parametrize(("values", "message"), [
    ({"device": "gpu"}, "b.device='gpu': not allowed; use auto, cpu or cuda:N"),
    ({"tile": "big"}, "b.tile='big': not allowed; use auto or a number >= 1"),
    ({"tile": 0}, "b.tile=0: out of range, use a value >= 1 - tiles"),
    ({"inn": 1}, "unknown config key b.inn: remove it or fix its spelling (did you mean b.in?)"),
])
def test_patterns_and_keyword_keys(values: dict, message: str) -> None:
    check_options("b", {"device": "cuda:1", "tile": 64, "in": "videos"}, Borrowing)
    with pytest.raises(OptionError) as err:
        check_options("b", values, Borrowing)
    assert str(err.value).startswith(message), str(err.value)
