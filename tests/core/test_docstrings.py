"""The examples in core docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = ["geometry", "detections", "postprocess", "metrics", "tiling"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"edgekit.core.{name}")
    result = doctest.testmod(module, extraglobs={"np": importlib.import_module("numpy")})
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


def test_core_imports_no_heavy_libraries():
    code = ("import sys, edgekit.core; heavy = {'torch', 'ultralytics', 'onnx', 'onnxruntime', 'tensorrt', "
            "'matplotlib', 'cv2', 'timm'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
