"""``manifest_settings`` feeds the frame to the image input, wherever it is among the model's inputs."""

from __future__ import annotations

import pytest

from edgekit.core.manifest import BundleManifest, ModelEntry, TensorSpec
from edgekit.deploy.detector import manifest_settings


def _manifest(role: str, inputs):
    model = ModelEntry(file="m.onnx", inputs=[TensorSpec(name=n, shape=s) for n, s in inputs],
                       outputs=[TensorSpec(name="output0", shape=[1, 7, 16])])
    return BundleManifest(task="refdet" if role == "detector" else "obb", classes=["a"], models={role: model})


@pytest.mark.parametrize("role,inputs,expected", [
    ("fp32", [("images", [1, 3, 64, 64])], "images"),
    ("detector", [("embedding", [1, 8]), ("images", [1, 3, 64, 64])], "images"),  # not simply the first
    ("detector", [("frame", ["batch", 3, "h", "w"]), ("embedding", [1, 8])], "frame"),
])
def test_the_image_input_is_chosen(role, inputs, expected):
    settings = manifest_settings(_manifest(role, inputs))
    assert settings["input_name"] == expected and settings["output_name"] == "output0"
