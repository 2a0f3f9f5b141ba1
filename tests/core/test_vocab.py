"""Each vocabulary is defined once and the places that enumerate it agree with it."""

from __future__ import annotations

from typing import get_args

import pytest

from edgekit.core import vocab


@pytest.mark.parametrize("alias,values", [
    (vocab.CalibMethod, vocab.CALIB_METHODS), (vocab.TrtCalibAlgorithm, vocab.TRT_CALIB_ALGORITHMS),
    (vocab.Target, vocab.TARGETS), (vocab.Simplifier, vocab.SIMPLIFIERS), (vocab.FloatScope, vocab.FLOAT_SCOPES),
    (vocab.DataFormat, vocab.DATA_FORMATS), (vocab.ModelRole, vocab.MODEL_ROLES), (vocab.Precision, vocab.PRECISIONS),
    (vocab.Backend, vocab.BACKENDS),
])
def test_tuples_are_the_aliases_values(alias, values):
    assert values == get_args(alias) and len(set(values)) == len(values) and values


def test_every_calibration_method_ships_a_tensorrt_algorithm():
    assert set(vocab.TRT_ALGORITHM_FOR_METHOD) == set(vocab.CALIB_METHODS)
    assert set(vocab.TRT_ALGORITHM_FOR_METHOD.values()) <= set(vocab.TRT_CALIB_ALGORITHMS)
    assert vocab.trt_algorithm("percentile") == "MinMaxCalibration"  # TensorRT has no percentile calibrator
    assert vocab.cache_method("percentile") == "minmax" and vocab.cache_method("entropy") == "entropy"
    with pytest.raises(ValueError, match="unknown calibration method"):
        vocab.trt_algorithm("entropy2")


def test_targets_and_backends_match_their_registries():
    from edgekit.deploy.runners import RUNNERS

    assert set(vocab.TARGET_TRT_VERSION) == set(vocab.TARGETS)
    assert vocab.TARGET_TRT_VERSION["jetson-xavier-nx"] == "8.5.2"
    assert set(RUNNERS) == set(vocab.BACKENDS)
    assert set(vocab.CONVERT_SOURCES) <= set(vocab.DATA_FORMATS) and set(vocab.CONVERT_TARGETS) <= set(vocab.DATA_FORMATS)
