"""The Trainer built from the config: plain DDP looks for unused parameters when image shards are mixed in."""

from __future__ import annotations

import pytest

from wantrain.commands.instantiate import build_trainer
from wantrain.training.lightning_private import ddp_finds_unused_parameters


@pytest.mark.parametrize("images", [True, False])
def test_image_shards_under_ddp_choose_find_unused_parameters(compose, tmp_path, capsys, images):
    overrides = ["data=mixed", "trainer=ddp_cpu", "logger=none", f"paths.root_dir={tmp_path}"]
    cfg = compose(*overrides, *([] if images else ["data.image_shards=null"]), root=tmp_path)
    trainer = build_trainer(cfg)
    said = capsys.readouterr().out
    assert ddp_finds_unused_parameters(trainer.strategy) is images
    assert ("trainer.strategy=ddp_find_unused_parameters_true: data.image_shards adds image steps" in said) is images
