"""PyTorch backend for the runner contract: the reference side of parity checks.

Takes an Ultralytics checkpoint (``.pt``; needs ultralytics), a TorchScript file (``.torchscript``,
``.ts``) or an ``nn.Module``. Ultralytics heads return ``(decoded, raw_maps)`` in eval mode; the
runner keeps the first tensor, which is exactly what the exported ONNX graph outputs.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgekit.core.errors import ConfigError, DeviceError, ModelError
from edgekit.core.postprocess import CANDIDATE_OUTPUT, DECODED_OUTPUT

from .base import Dim, Runner, TensorMeta
from .torch_decode import decode_obb_rows, gpu_decodable, trim_obb_rows

_log = logging.getLogger(__name__)


class TorchRunner(Runner):
    """Runs a PyTorch model on numpy feeds (CPU by default).

    The plain form (float32 NCHW feed, float32 model) is the parity reference. The fast form is
    the GPU path of the runtime, each part a switch:

    * ``uint8_input=LetterboxSpec``: the feed is the letterboxed uint8 frame ``(1, H, W, 3)`` BGR, a
      quarter of the bytes of a float input; colour swap, scaling and CHW happen on the device;
    * ``half``: fp16 weights and activations; ``fuse``: Conv+BN folded (Ultralytics ``fuse()``);
      ``channels_last``: weights and activations in NHWC memory order (the layout tensor-core
      convolutions use; the uint8 frame arrives in it already);
    * ``decode=PostprocessSpec`` (OBB, ProbIoU, Fast-NMS): the decode runs on the device too
      (:mod:`edgekit.deploy.runners.torch_decode`) and the runner returns
      :data:`~edgekit.core.postprocess.DECODED_OUTPUT` rows instead of the raw output, which the
      :class:`~edgekit.deploy.detector.Detector` turns into the same Detections as the numpy decode;
      when more than ``max_candidates`` candidates would matter, the raw output comes back instead.
      With ``device_nms=False`` the device only trims: the top candidates (at most ``max_candidates``)
      come back as :data:`~edgekit.core.postprocess.CANDIDATE_OUTPUT` rows and the suppression runs
      on the host over those few rows (same detections; fewer kernels per frame, see docs/runtime.md);
    * ``cuda_graph``: on CUDA, upload, normalisation, forward, decode and the copy back of the
      static shape are captured once as CUDA graphs and replayed (a yolov8n forward is launch-bound:
      5.1 ms eager vs 1.05 ms as a graph on an H200), between pinned host buffers, nothing
      allocated per frame. There are ``slots`` graphs, each with its own buffers and stream, so
      :meth:`submit` can enqueue frame i+1 while frame i still runs (``max_in_flight = slots``); a
      frame takes the first free slot, so frames one at a time reuse one graph (and its cached memory);
    * ``kernels``: the device's own work around the forward. ``"triton"``: the input conversion
      (:mod:`.triton_normalise`) and, with ``decode`` and ``device_nms``, the whole decode
      (:mod:`.triton_obb_decode`: three launches, no sort, boxes regularised on the device) as Triton
      kernels, CUDA only; ``"torch"``: torch
      ops (any device; the decode alone is about 110 kernels, :mod:`.torch_decode`); ``"auto"``
      (default): the Triton kernels where they run (CUDA, triton importable, both compiling when the
      runner starts), else the torch ops; :attr:`kernels_used` says which ran;
    * ``compile``: ``"decode"`` fuses the decode's hundred-odd small kernels with ``torch.compile``
      (inductor; needs triton and a C compiler on CUDA), ``"all"`` the forward too; compiled once per
      shape while the slots warm up, then captured in the graphs like the eager ops. Float64 math in
      fused kernels may round differently in the last bit (FMA), so the bench counts frames equal to
      the numpy decode instead of assuming it;
    * ``threaded_copy``: the frame goes into the pinned input through torch's multi-threaded CPU copy
      (:meth:`host_copy`) instead of ``np.copyto`` (one thread);
    * ``trim_conf`` (with ``num_classes``, eager path, no ``decode``): only anchors whose best class
      score passes the threshold are copied back (the decoder drops the rest anyway).
    """

    backend = "torch"

    def __init__(self, model: Union[str, os.PathLike[str], Any], input_name: str = "images",
                 input_shape: Optional[Sequence[Dim]] = None, output_names: Sequence[str] = ("output0",),
                 device: str = "cpu", name: Optional[str] = None, *, uint8_input: Any = None, half: bool = False,
                 fuse: bool = False, cuda_graph: bool = False, trim_conf: Optional[float] = None,
                 num_classes: Optional[int] = None, decode: Any = None, max_candidates: int = 256,
                 slots: int = 2, channels_last: bool = False, device_nms: bool = True,
                 compile: str = "none", kernels: str = "auto", threaded_copy: bool = True) -> None:
        is_path = isinstance(model, (str, os.PathLike))
        super().__init__(name or (Path(model).name if is_path else type(model).__name__))
        self.model_source = model
        self.input_name = input_name
        # Default: any batch and spatial size, 3 channels (what an Ultralytics detector accepts).
        self.input_shape: Tuple[Dim, ...] = tuple(input_shape) if input_shape else ("batch", 3, "height", "width")
        self.output_names = tuple(output_names)
        self.device = device
        self.uint8_input, self.half, self.fuse, self.cuda_graph = uint8_input, half, fuse, cuda_graph
        if trim_conf is not None and not num_classes:
            raise ValueError("trim_conf needs num_classes (the class-score rows of the raw output)")
        self.trim_conf, self.num_classes = trim_conf, num_classes
        if decode is not None and not gpu_decodable(decode):
            raise ConfigError("the torch runner decodes OBB outputs with ProbIoU Fast-NMS only",
                              "set postprocess obb_iou: probiou, obb_fast_nms: true, or decode on the host")
        if slots < 1 or max_candidates < 1:
            raise ValueError("slots and max_candidates must be >= 1")
        self.decode_spec, self.max_candidates, self.slots = decode, int(max_candidates), int(slots)
        self.channels_last, self.device_nms = channels_last, bool(device_nms)
        if compile not in ("none", "decode", "all"):
            raise ValueError(f"compile must be 'none', 'decode' or 'all', got {compile!r}")
        self.compile = compile
        if kernels not in ("auto", "triton", "torch"):
            raise ValueError(f"kernels must be 'auto', 'triton' or 'torch', got {kernels!r}")
        if kernels == "triton" and not str(device).startswith("cuda"):
            raise ConfigError("kernels='triton' needs a CUDA device", "use kernels='auto' (torch ops where Triton cannot run)")
        self.kernels = kernels
        self.kernels_used: Optional[str] = None  # "triton" or "torch", known once the runner is active
        self._normalise: Any = None  # the Triton input conversion, bound to its parameters, when used
        self._triton_decode: Any = None  # the Triton decode, bound to its parameters, when used
        self.threaded_copy = bool(threaded_copy)  # host_copy: the frame into the pinned input on torch's threads
        self._decoders: Dict[Tuple[bool, int], Any] = {}
        self.model = None
        self._slots: List[_Slot] = []
        self.decode_fallbacks = 0  # frames whose raw output went to the host decode (overflow)

    @property
    def max_in_flight(self) -> Optional[int]:  # type: ignore[override]
        return len(self._slots) or None

    def _activate(self) -> Dict[str, TensorMeta]:
        try:
            import torch  # lazy: the device subset has no torch
        except ImportError:
            raise DeviceError("torch is not installed", "pip install edgekit[train] to use the torch runner") from None
        self._torch = torch
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise DeviceError(f"torch runner device '{self.device}' but CUDA is not available here",
                              "use device='cpu' or run on a machine with an NVIDIA GPU")
        if self.cuda_graph and not str(self.device).startswith("cuda"):
            raise DeviceError("cuda_graph needs a CUDA device", "pass device='cuda' or cuda_graph=False")
        if self.cuda_graph and self.uint8_input is None:
            raise ConfigError("cuda_graph needs uint8_input (the graph reads a static letterboxed frame)",
                              "pass uint8_input=LetterboxSpec(...)")
        model = _load_model(self.model_source)
        if self.fuse and hasattr(model, "fuse"):
            model = model.fuse(verbose=False) if "verbose" in _arg_names(model.fuse) else model.fuse()
        self.model = model.to(self.device).eval()
        if self.half:
            self.model = self.model.half()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._model_fn = torch.compile(self.model, dynamic=False) if self.compile == "all" else self.model
        self._decoders = {}
        self._slots = []
        self._dtype = torch.float16 if self.half else torch.float32
        self._start_triton()
        if self.uint8_input is not None:
            h, w = self.uint8_input.imgsz
            meta = TensorMeta(self.input_name, (1, h, w, 3), np.dtype(np.uint8))
            self._prepare_uint8(h, w)
            return {self.input_name: meta}
        return {self.input_name: TensorMeta(self.input_name, self.input_shape, np.dtype(np.float32))}

    def _prepare_uint8(self, h: int, w: int) -> None:
        torch, spec = self._torch, self.uint8_input
        on_cuda = str(self.device).startswith("cuda")
        self._host = torch.empty((1, h, w, 3), dtype=torch.uint8, pin_memory=on_cuda)
        self._static_in = torch.empty((1, h, w, 3), dtype=torch.uint8, device=self.device)
        order = [2, 1, 0] if spec.color_order == "RGB" else [0, 1, 2]
        self._order = torch.tensor(order, device=self.device)
        self._scale = torch.tensor(spec.scale, dtype=torch.float32, device=self.device)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        if self.cuda_graph:
            self._slots = [self._capture_slot() for _ in range(self.slots)]

    def _forward_uint8(self, frame: Any) -> List[Any]:
        """uint8 NHWC device tensor -> model outputs (every op on the device; graph-capturable)."""
        torch = self._torch
        if self._normalise is not None:  # one kernel, the same values as the ops below
            _, h, w, _ = frame.shape
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            x = self._normalise(frame, torch.empty((1, 3, h, w), dtype=self._dtype, device=frame.device,
                                                   memory_format=fmt))
        else:
            if self.channels_last:  # swap colours on the NHWC frame: the NCHW view of it is channels-last already
                x = frame.index_select(3, self._order).permute(0, 3, 1, 2).float() * self._scale
            else:
                x = frame.permute(0, 3, 1, 2).index_select(1, self._order).float() * self._scale
            if _affine(self.uint8_input):
                x = (x - self._mean) / self._std
            x = x.to(self._dtype)
        with torch.inference_mode():
            return _tensor_leaves(self._model_fn(x))[: len(self.output_names)]

    def _results(self, outs: List[Any]) -> List[Any]:
        """What crosses back to the host: the decoded rows (one batch-1 OBB image) or the raw outputs."""
        if self.decode_spec is not None and outs[0].dim() == 3 and outs[0].shape[0] == 1:
            with self._torch.inference_mode():
                return [self._decoder()(outs[0][0])]
        return outs

    def _decoder(self) -> Any:
        """raw -> rows for the current ``device_nms`` and ``max_candidates`` (compiled once each when asked)."""
        key = (self.device_nms, self.max_candidates)
        if key not in self._decoders:
            if self._triton_decode is not None and self.device_nms:
                self._decoders[key] = partial(self._triton_decode, max_candidates=self.max_candidates)
            else:
                fn = partial(decode_obb_rows if self.device_nms else trim_obb_rows, spec=self.decode_spec,
                             max_candidates=self.max_candidates)
                self._decoders[key] = self._torch.compile(fn, dynamic=False) if self.compile != "none" else fn
        return self._decoders[key]

    def _start_triton(self) -> None:
        """Import and build the Triton kernels (``kernels`` auto/triton on CUDA), or leave the torch ops:
        the input conversion for a uint8 input, the decode for a ``decode`` spec.

        Built here, before any graph capture, on tiny inputs: a host where they cannot build (no
        triton, no C compiler for its launcher) fails now, not inside a capture.
        """
        self._normalise = self._triton_decode = None
        self.kernels_used = "torch"
        wanted = self.uint8_input is not None or self.decode_spec is not None
        if self.kernels == "torch" or not str(self.device).startswith("cuda") or not wanted:
            return
        torch, dev = self._torch, self.device
        try:
            from . import triton_normalise, triton_obb_decode

            normalise = decode = None
            if self.uint8_input is not None:
                spec = self.uint8_input
                normalise = partial(triton_normalise.normalise, params=triton_normalise.normalise_params(spec, dev),
                                    rgb=spec.color_order == "RGB", affine=_affine(spec))
                normalise(torch.zeros((1, 2, 2, 3), dtype=torch.uint8, device=dev),
                          torch.empty((1, 3, 2, 2), dtype=self._dtype, device=dev))
            if self.decode_spec is not None:
                decode = partial(triton_obb_decode.decode_rows, spec=self.decode_spec,
                                 params=triton_obb_decode.decode_params(self.decode_spec, dev))
                decode(torch.zeros((6, 8), device=dev), max_candidates=8)  # one class, eight anchors
            torch.cuda.synchronize()
        except Exception as e:  # ImportError, or one of the many types a failed triton build raises
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if self.kernels == "triton":
                raise DeviceError(f"the Triton kernels cannot run here: {first}", "use kernels='auto' or 'torch'") from None
            _log.warning("Triton kernels unavailable (%s); using torch ops", first)
            return
        self._normalise, self._triton_decode, self.kernels_used = normalise, decode, "triton"

    def _capture_slot(self) -> _Slot:
        """One graph: pinned uint8 in -> H2D -> normalise -> forward [-> decode] -> D2H into pinned outputs.

        The copies are captured too, so a frame costs one graph launch and one event wait. Without
        ``decode`` the whole (C, 8400) fp16 output is copied back: measured on an H200, that costs
        less than the launches and the sync that trimming on the device needs.
        """
        torch = self._torch
        h, w = self.uint8_input.imgsz
        host = torch.empty((1, h, w, 3), dtype=torch.uint8, pin_memory=True)
        frame = torch.zeros((1, h, w, 3), dtype=torch.uint8, device=self.device)
        # The slot's own stream warms up, captures and later replays its graph: workspaces that libraries
        # key by stream are then the slot's own, so two slots can run at once.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up (anchors, cuDNN autotune) outside the graph
            for _ in range(3):
                results = self._results(self._forward_uint8(frame))
        torch.cuda.current_stream().wait_stream(stream)
        out_host = [torch.empty(r.shape, dtype=r.dtype, pin_memory=True) for r in results]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            frame.copy_(host, non_blocking=True)
            raw = self._forward_uint8(frame)
            for dst, src in zip(out_host, self._results(raw)):
                dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()
        return _Slot(graph, host, out_host, raw[0], stream, torch.cuda.Event())

    # ---- inference -------------------------------------------------------------------------------
    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self._slots:
            return self._collect(self._submit(feed))
        torch = self._torch
        if self.uint8_input is not None:
            self._host.numpy()[...] = feed[self.input_name]
            self._static_in.copy_(self._host, non_blocking=True)
            tensors = self._forward_uint8(self._static_in)
        else:
            x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name])).to(self.device)
            with torch.inference_mode():
                tensors = _tensor_leaves(self.model(x.to(torch.float16) if self.half else x))[: len(self.output_names)]
        results = self._results(tensors)
        if results is not tensors:
            return self._decoded(results[0].cpu().numpy(), tensors[0])
        if self.trim_conf is not None:
            tensors = [self._trim(tensors[0]), *tensors[1:]]
        return {name: t.detach().float().cpu().numpy() for name, t in zip(self.output_names, tensors)}

    def _decoded(self, rows: np.ndarray, raw: Any) -> Dict[str, np.ndarray]:
        """The decoded (or candidate) rows, or (on overflow: more candidates than examined) the raw output
        for the host decode."""
        if rows[0, 1] != 0:
            self.decode_fallbacks += 1
            return {self.output_names[0]: raw.detach().float().cpu().numpy()}
        return {DECODED_OUTPUT if self.device_nms else CANDIDATE_OUTPUT: rows[: int(rows[0, 0]) + 1].copy()}

    def feed_buffer(self) -> Optional[np.ndarray]:
        """The pinned uint8 input the next :meth:`submit` reads, when it is free (CUDA-graph path only).

        A caller that letterboxes straight into it and submits it before preparing another frame saves
        the host copy of the frame (``Detector.prepare(reuse=True)``).
        """
        slot = self._free_slot()
        return None if slot is None else slot.host_np

    def _free_slot(self) -> Optional[_Slot]:
        """The first slot not in flight. One frame at a time therefore always runs slot 0's graph, whose
        activations stay in the GPU's L2 cache between frames: cycling through the slots measured ~0.09 ms
        slower per frame on an H200 (benchmarks/results/runtime_gpu_nvidia-h200.md)."""
        for slot in self._slots:
            if not slot.busy:
                return slot
        return None

    def host_copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        """``np.copyto(dst, src)`` through torch, whose CPU copy is split over its intra-op threads: a
        640 x 640 frame fresh from memory takes ~0.2 ms on one thread of a server Xeon (docs/runtime.md)."""
        # torch.from_numpy takes neither negative strides (a frame[..., ::-1] view) nor, without a
        # warning, read-only arrays: those (and small frames) take np.copyto
        if self.threaded_copy and dst.size >= (1 << 18) and src.flags.writeable and min(src.strides) >= 0:
            self._torch.from_numpy(dst).copy_(self._torch.from_numpy(src))
        else:
            np.copyto(dst, src)

    def _submit(self, feed: Dict[str, np.ndarray]) -> object:
        if not self._slots:
            return self._infer(feed)
        slot = self._free_slot()
        if slot is None:
            raise RuntimeError(f"torch runner: more than {len(self._slots)} submitted frames not collected")
        frame = feed[self.input_name]
        if frame is not slot.host_np:  # else letterboxed in place (feed_buffer)
            self.host_copy(slot.host_np, frame)
        if any(s.busy for s in self._slots):  # frames in flight: this one on the slot's own stream, beside them
            with self._torch.cuda.stream(slot.stream):
                slot.graph.replay()
                slot.event.record(slot.stream)
        else:  # alone: on the caller's stream, sparing the stream switch (tens of us of Python on a slow host)
            slot.graph.replay()
            slot.event.record()
        slot.busy = True
        return slot

    def _collect(self, handle: object) -> Dict[str, np.ndarray]:
        if not isinstance(handle, _Slot):
            return handle  # type: ignore[return-value]
        handle.event.synchronize()
        try:
            if self.decode_spec is not None:
                return self._decoded(handle.out_np, handle.raw)
            return {name: h.numpy().astype(np.float32) for name, h in zip(self.output_names, handle.out_host)}
        finally:
            handle.busy = False

    def _discard_pending(self) -> None:
        for slot in self._slots:
            if slot.busy:
                slot.event.synchronize()
                slot.busy = False

    def _trim(self, raw: Any) -> Any:
        """(B, 4+nc+k, A) -> the same rows for the anchors any image scores above ``trim_conf``."""
        scores = raw[:, 4:4 + self.num_classes].amax(dim=1)  # (B, A)
        keep = (scores > self.trim_conf).any(dim=0).nonzero().flatten()
        return raw.index_select(2, keep)

    def _deactivate(self) -> None:
        self._discard_pending()
        self.model = None
        self._slots = []


def _affine(spec: Any) -> bool:
    """Whether the input conversion subtracts a mean or divides by a std (else only scales)."""
    return spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0)


class _Slot:
    """One CUDA graph with its own pinned input/outputs, stream and completion event."""

    def __init__(self, graph: Any, host: Any, out_host: List[Any], raw: Any, stream: Any, event: Any) -> None:
        self.graph, self.host, self.out_host, self.raw = graph, host, out_host, raw
        self.stream, self.event = stream, event
        self.host_np, self.out_np = host.numpy(), out_host[0].numpy()  # views made once, not per frame
        self.busy = False


def _arg_names(fn: Any) -> Tuple[str, ...]:
    import inspect

    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def _load_model(source: Any):
    import torch

    if isinstance(source, torch.nn.Module):
        return source.float()
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "pass an existing .pt or .torchscript file")
    try:
        if path.suffix.lower() in (".torchscript", ".ts"):
            return torch.jit.load(str(path), map_location="cpu")
        from ultralytics.nn.tasks import load_checkpoint  # lazy: only .pt checkpoints need ultralytics

        from edgekit.checkpoints import guarded_loading

        with guarded_loading():  # weights_only + allow-list: a checkpoint's pickled code never runs
            model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
        return model.float()
    except ModelError:
        raise
    except Exception as e:  # torch/pickle/ultralytics raise many types for an unreadable checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load checkpoint {path}: {first}",
                         "pass an Ultralytics checkpoint such as runs/<id>/checkpoints/best.pt") from None


def _tensor_leaves(out: Any) -> list:
    """Tensors of a (possibly nested) model output, depth first."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    leaves: list = []
    for item in out if isinstance(out, (list, tuple)) else []:
        leaves.extend(_tensor_leaves(item))
    return leaves


__all__ = ["TorchRunner"]
