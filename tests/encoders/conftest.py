"""Tiny random encoders built once per session in a temp dir, loaded as a user loads real weights."""

from __future__ import annotations

import pytest

from wantrain.encoders.tiny import build_tiny_clip, build_tiny_dit, build_tiny_t5, build_tiny_umt5

CAPTIONS = [
    "a red ball rolls to the left",
    "a blue square moves up slowly",
    "the green circle spins in place",
    "a yellow triangle bounces on the floor",
    "two small dots drift apart on a dark background",
    "a white line sweeps from top to bottom",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A folder holding the tiny t5 / umt5 / dit / clip models."""
    root = tmp_path_factory.mktemp("tiny_encoders")
    build_tiny_t5(root / "t5", CAPTIONS, seed=0)
    build_tiny_umt5(root / "umt5", CAPTIONS, seed=0)
    build_tiny_dit(root / "dit", seed=0)
    build_tiny_clip(root / "clip", seed=0)
    return root


@pytest.fixture(scope="session")
def captions():
    """The captions the tiny tokenizers were trained on."""
    return list(CAPTIONS)
