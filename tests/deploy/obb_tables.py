"""Hand-made raw OBB outputs shared by the device-decode tests (torch ops and Triton kernels)."""

from __future__ import annotations

import numpy as np


def raw_table(rng, anchors: int, nc: int = 3, objects: int = 12) -> np.ndarray:
    """(4+nc+1, A) raw OBB output: clustered boxes (heavy overlap), sparse scores, exact score ties."""
    raw = np.zeros((4 + nc + 1, anchors), np.float32)
    raw[4:4 + nc] = rng.random((nc, anchors)) ** 6
    centres = rng.uniform(0, 640, (objects, 2))[rng.integers(0, objects, anchors)]
    raw[:2] = (centres + rng.normal(0, 3, centres.shape)).T
    raw[2:4] = rng.uniform(5, 60, (2, anchors))
    raw[-1] = rng.uniform(-np.pi / 4, 3 * np.pi / 4, anchors)
    raw[4, : anchors // 10] = 0.5  # ties: the order must follow the anchor index, as numpy's stable sort
    return raw.astype(np.float16).astype(np.float32)  # values an fp16 model can output


def same_detections(a, b) -> bool:
    """Bit-equal boxes, scores and class ids."""
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.class_ids, b.class_ids))
