"""A metric computed in numpy must not make a RefDet checkpoint unloadable (seen on the GPU run: a
numpy float64 in best.pt's metrics was refused by the weights_only loader)."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.checkpoints import safe_load
from edgekit.train.fewshot.checkpoint import checkpoint_bytes
from edgekit.train.fewshot.model import RefDetModelConfig


def test_numpy_values_in_extras_are_stored_as_plain_values(tmp_path):
    cfg = RefDetModelConfig(encoder_weights="random")
    data = checkpoint_bytes({"w": torch.zeros(2)}, cfg, 64, 1, 3,
                            metrics={"ap50": np.float64(0.25), "curve": [np.float32(0.5)], "n": np.int64(3)},
                            hist=np.arange(3))
    path = tmp_path / "best.pt"
    path.write_bytes(data)
    ckpt = safe_load(path)
    assert ckpt["metrics"] == {"ap50": 0.25, "curve": [0.5], "n": 3}
    assert type(ckpt["metrics"]["ap50"]) is float and type(ckpt["metrics"]["n"]) is int
    assert torch.equal(ckpt["hist"], torch.arange(3))
