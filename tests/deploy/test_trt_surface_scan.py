"""Every TensorRT attribute edgekit uses exists in every snapshotted TensorRT (8.5.2, 10.x, 11.x), or sits
behind a version guard (docs/tensorrt.md, "Version guards"). The fakes cannot hide a drift: the surface
comes from NVIDIA's binding sources, not from the fakes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.trt_scan import problems, scan_source, scan_tree
from tests.fakes.trt_surface import available_versions, load_surface

ROOT = Path(__file__).resolve().parents[2]
EDGEKIT = ROOT / "edgekit"


@pytest.fixture(scope="module")
def uses():
    return scan_tree(EDGEKIT)


@pytest.mark.parametrize("version", available_versions())
def test_edgekit_tensorrt_use_resolves(uses, version: str) -> None:
    found = problems(uses, load_surface(version))
    assert not found, "TensorRT API used without a version guard:\n" + "\n".join(found)


def test_every_file_that_uses_tensorrt_is_scanned(uses) -> None:
    """The scan must see the files that touch TensorRT (a scanner that finds nothing proves nothing)."""
    scanned = {u.path for u in uses}
    for py in EDGEKIT.rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        if re.search(r"^\s*import tensorrt\b|\btrt\.[A-Za-z]", text, re.M):
            assert str(py.relative_to(ROOT)) in scanned, f"{py}: uses TensorRT but the scan traced nothing"


PLANTED = '''
import tensorrt as trt

def build(onnx, logger):
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size=1 << 20)
    builder.num_DLA_cores = 2
    return builder.build_engine(network, config)
'''

GUARDED = '''
def build(trt, builder, network, config, calibrator):
    major = int(trt.__version__.split(".")[0])
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    engine = builder.build_engine(network, config) if major < 10 else None
    if hasattr(config, "int8_calibrator"):
        config.int8_calibrator = calibrator
    if major >= 11:
        return flags
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, pool_size=1 << 20)
    return engine
'''


def test_scanner_catches_planted_misuse() -> None:
    uses = scan_source(PLANTED, "planted.py")
    v11 = problems(uses, load_surface(11))
    assert any("BuilderFlag.FP16" in p and "missing" in p for p in v11)
    assert any("EXPLICIT_BATCH" in p for p in v11)
    v10 = problems(uses, load_surface(10))
    assert any("Builder.build_engine" in p and "missing in TensorRT 10" in p for p in v10)
    v8 = problems(uses, load_surface(8))
    assert any("set_memory_pool_limit(size=)" in p for p in v8), v8
    assert any("num_DLA_cores" in p and "read-only" in p for p in v8), v8
    assert not any("FP16" in p for p in v8 + v10)


def test_scanner_honours_version_guards() -> None:
    uses = scan_source(GUARDED, "guarded.py")
    for version in available_versions():
        assert problems(uses, load_surface(version)) == [], version
    # The same code without its guards is caught.
    unguarded = GUARDED.replace("if major < 10:", "if True:").replace("if major < 10 else None", "if 1 else 0")
    unguarded = unguarded.replace("if major >= 11:\n        return flags", "pass")
    assert problems(scan_source(unguarded, "unguarded.py"), load_surface(11))


def test_parameters_typed_by_name_only_when_unannotated() -> None:
    src = '''
def f(trt, profile, config: "EngineOptions"):
    profile.min_shape
    config.whatever
'''
    found = problems(scan_source(src, "x.py"), load_surface(8))
    assert len(found) == 1 and "IOptimizationProfile.min_shape" in found[0] and "annotate" in found[0]
