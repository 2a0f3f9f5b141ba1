"""Golden data for on-device parity: preprocessed inputs, reference outputs and their tolerances.

``golden/`` holds ``input_NNN.npy`` (exactly what the network is fed), ``fp32_NNN.<output>.npy`` (ONNX
Runtime FP32 outputs on the host) and, with INT8, ``int8_NNN.<output>.npy`` (ONNX Runtime on the
Q/DQ graph), plus ``golden.json`` saying which image each came from and how close a device engine of
each precision must come. The tolerances are engineering defaults (TensorRT FP32 on Volta has no
TF32; FP16 rounds pixel coordinates to ~0.1 px at 320-640; INT8 is judged on detections only), not
values measured on a Xavier NX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgekit.core.atomic import write_json_atomic

GOLDEN_DIR = "golden"
DEVICE_TOLERANCES: Dict[str, Dict[str, float]] = {
    "fp32": {"atol": 0.05, "rtol": 1e-3, "min_iou": 0.9, "min_match_rate": 0.99},
    "fp16": {"atol": 0.5, "rtol": 1e-2, "min_iou": 0.8, "min_match_rate": 0.95},
    "int8": {"atol": float("inf"), "rtol": float("inf"), "min_iou": 0.5, "min_match_rate": 0.8},
}


def _save_npy(path: Path, arr: np.ndarray) -> str:
    np.save(str(path), np.ascontiguousarray(arr))
    return path.name


def write_golden(bundle_dir: Path, feeds: Sequence[Dict[str, np.ndarray]], fp32_outputs: Sequence[Dict[str, np.ndarray]],
                 image_names: Sequence[str], int8_outputs: Optional[Sequence[Dict[str, np.ndarray]]] = None,
                 conf: float = 0.25) -> Path:
    """Write the golden set into ``bundle_dir/golden`` (the bundle itself is built in a temp dir)."""
    root = Path(bundle_dir) / GOLDEN_DIR
    root.mkdir(parents=True, exist_ok=True)
    cases: List[Dict[str, Any]] = []
    for i, feed in enumerate(feeds):
        case: Dict[str, Any] = {"image": image_names[i], "inputs": {}, "fp32": {}, "int8": {}}
        for name, arr in feed.items():
            case["inputs"][name] = _save_npy(root / f"input_{i:03d}.{name}.npy", arr)
        for name, arr in fp32_outputs[i].items():
            case["fp32"][name] = _save_npy(root / f"fp32_{i:03d}.{name}.npy", arr)
        for name, arr in (int8_outputs[i] if int8_outputs else {}).items():
            case["int8"][name] = _save_npy(root / f"int8_{i:03d}.{name}.npy", arr)
        cases.append(case)
    tolerances = {k: {kk: (None if vv == float("inf") else vv) for kk, vv in v.items()} for k, v in DEVICE_TOLERANCES.items()}
    write_json_atomic(root / "golden.json", {
        "reference": "onnxruntime CPU (host)", "postprocess_conf": conf, "cases": cases,
        "tolerances": tolerances,
        "note": "raw outputs compare as |device - fp32| <= atol + rtol*|fp32| (null = skip raw check); "
                "detections must match at IoU >= min_iou with equal classes for min_match_rate of them",
    })
    return root


__all__ = ["write_golden", "DEVICE_TOLERANCES", "GOLDEN_DIR"]
