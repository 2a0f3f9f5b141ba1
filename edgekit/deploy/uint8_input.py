"""The uint8-input variant of a bundle's graph: normalisation and HWC -> CHW moved into the model.

The runtime then feeds the letterboxed frame as it is, ``(1, H, W, 3)`` uint8 BGR, a quarter of
the bytes of the float input, and the runtime's own multi-threaded kernels do the colour swap,
scaling and transpose. The variant is made in memory from the bundle's ``model.onnx`` when the
runner is created, so ``model.onnx`` stays the file Ultralytics and every other tool load, and the
bundle's sha256 still covers what actually runs. Prepended nodes::

    images_u8 (1,H,W,3) uint8 -> Cast(float) -> Mul(scale) [-> Sub(mean) -> Div(std)]
        -> Transpose(0,3,1,2) [-> Gather(channels 2,1,0) for RGB models] -> images

The values equal :func:`edgekit.core.letterbox.preprocess` bit for bit (same float32 operations;
tests/deploy/test_uint8_input.py).
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np

from edgekit.core.errors import ModelError
from edgekit.core.letterbox import LetterboxSpec

UINT8_SUFFIX = "_u8"


def uint8_input_variant(model: Union[str, os.PathLike[str], bytes], spec: LetterboxSpec) -> bytes:
    """Serialized ONNX whose single image input takes letterboxed uint8 BGR frames (NHWC)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ModelError("the uint8-input graph needs the onnx package", "pip install onnx, or feed float input") \
            from None
    m = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    g = m.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"the uint8-input graph needs one image input, this model has {[i.name for i in inputs]}",
                         "feed float input for multi-input models")
    inp = inputs[0]
    dims = inp.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "dynamic") for d in dims]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT or len(shape) != 4 or shape[1] != 3:
        raise ModelError(f"input '{inp.name}' is not a float (N, 3, H, W) image (shape {shape})",
                         "feed float input for this model")
    name, p = inp.name, f"{inp.name}{UINT8_SUFFIX}"
    nodes = [helper.make_node("Cast", [p], [f"{p}/float"], to=TensorProto.FLOAT),
             helper.make_node("Mul", [f"{p}/float", f"{p}/scale"], [f"{p}/scaled"])]
    consts = [numpy_helper.from_array(np.asarray(spec.scale, np.float32), f"{p}/scale")]
    last = f"{p}/scaled"
    if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
        # BGR frame order: mean/std are given in the network's channel order, so reverse them for RGB.
        order = slice(None, None, -1) if spec.color_order == "RGB" else slice(None)
        consts += [numpy_helper.from_array(np.asarray(spec.mean, np.float32)[order], f"{p}/mean"),
                   numpy_helper.from_array(np.asarray(spec.std, np.float32)[order], f"{p}/std")]
        nodes += [helper.make_node("Sub", [last, f"{p}/mean"], [f"{p}/centred"]),
                  helper.make_node("Div", [f"{p}/centred", f"{p}/std"], [f"{p}/normalised"])]
        last = f"{p}/normalised"
    chw = name if spec.color_order == "BGR" else f"{p}/chw"
    nodes.append(helper.make_node("Transpose", [last], [chw], perm=[0, 3, 1, 2]))
    if spec.color_order == "RGB":
        consts.append(numpy_helper.from_array(np.asarray([2, 1, 0], np.int64), f"{p}/rgb"))
        nodes.append(helper.make_node("Gather", [chw, f"{p}/rgb"], [name], axis=1))
    new_input = helper.make_tensor_value_info(p, TensorProto.UINT8, [shape[0], shape[2], shape[3], 3])
    position = list(g.input).index(inp)
    g.input.remove(inp)
    g.input.insert(position, new_input)
    for node in reversed(nodes):
        g.node.insert(0, node)
    g.initializer.extend(consts)
    return m.SerializeToString()


def takes_uint8_frames(shape: tuple, dtype: np.dtype) -> bool:
    """Whether an input of this shape/dtype takes letterboxed uint8 frames as (N, H, W, 3)."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 4 and shape[3] == 3


__all__ = ["uint8_input_variant", "takes_uint8_frames", "UINT8_SUFFIX"]
