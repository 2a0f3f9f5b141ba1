"""Tiny real models for the runner contract: one torch module and the ONNX file exported from it."""

from __future__ import annotations

from pathlib import Path

import pytest

INPUT_SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="session")
def tiny_torch_model():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return y.mean(dim=(2, 3)), y  # two outputs, like a head's (decoded, raw maps)

    return Tiny().eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_torch_model) -> Path:
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(tiny_torch_model, torch.zeros(INPUT_SHAPE), str(path), input_names=["images"],
                      output_names=["pooled", "maps"], opset_version=17, dynamo=False)
    return path
