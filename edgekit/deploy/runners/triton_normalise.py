"""The torch runner's input conversion as one Triton kernel: letterboxed uint8 BGR NHWC -> the network input.

The torch ops (``permute``, ``index_select`` for the colour order, ``float``, ``* scale``, the optional
``(x - mean) / std``, ``to(fp16)``) are four to six full-frame kernels; this is one, reading each
pixel's three bytes once. Same float32 arithmetic in the same order (the division rounded to nearest,
as torch's; no FMA contraction), then the same round-to-nearest cast, so the input is bit-identical (tests run it in
Triton's interpreter against the torch ops). The output may be NCHW or channels-last: the kernel
writes through the output's strides.
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


def _normalise(src_ptr, dst_ptr, params_ptr, n_pixels, stride_c, stride_p, SRC_0: tl.constexpr, SRC_1: tl.constexpr,
               SRC_2: tl.constexpr, AFFINE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    pix = pid * BLOCK + tl.arange(0, BLOCK)
    inside = pix < n_pixels
    scale = tl.load(params_ptr)
    for c in tl.static_range(3):
        src_c = SRC_0 if c == 0 else (SRC_1 if c == 1 else SRC_2)
        v = tl.load(src_ptr + pix * 3 + src_c, mask=inside, other=0).to(tl.float32) * scale
        if AFFINE:
            v = tl.math.div_rn(v - tl.load(params_ptr + 1 + c), tl.load(params_ptr + 4 + c))
        tl.store(dst_ptr + c * stride_c + pix * stride_p, v.to(dst_ptr.dtype.element_ty), mask=inside)


_kernel = triton.jit(_normalise)
BLOCK = 1024


def normalise_params(spec: Any, device: Any) -> Any:
    """float32 ``[scale, mean x3, std x3]`` on the device (read-only: shared by every slot)."""
    import torch

    return torch.tensor([spec.scale, *spec.mean, *spec.std], dtype=torch.float32, device=device)


def normalise(frame: Any, out: Any, params: Any, *, rgb: bool, affine: bool) -> Any:
    """``frame`` (1, H, W, 3) uint8 BGR -> ``out`` (1, 3, H, W) float16/float32, NCHW or channels-last."""
    on_cpu = frame.device.type == "cpu"
    if on_cpu and not isinstance(_kernel, InterpretedFunction):
        raise ValueError("the Triton normalise runs on CUDA tensors (CPU tensors only under TRITON_INTERPRET=1)")
    _, _, h, w = out.shape
    stride_p = out.stride(3)
    if out.stride(2) != w * stride_p or not frame.is_contiguous():
        raise ValueError("normalise needs a contiguous frame and an NCHW or channels-last output")
    order = (2, 1, 0) if rgb else (0, 1, 2)
    n = h * w
    exact = {} if on_cpu else {"enable_fp_fusion": False}  # x * scale - mean must not become one FMA
    _kernel[(triton.cdiv(n, BLOCK),)](frame, out, params, n, out.stride(1), stride_p, SRC_0=order[0], SRC_1=order[1],
                                      SRC_2=order[2], AFFINE=bool(affine), BLOCK=BLOCK, **exact)
    return out


__all__ = ["normalise", "normalise_params"]
