"""The one runner contract every inference backend follows (after Polygraphy's ``BaseRunner``).

A runner's lifecycle is ``activate()`` (the heavy work: load the model, build a session, allocate
buffers), any number of ``infer(feed)`` calls, then ``deactivate()``; it is also a context manager.
The guard checks live here, once, so a backend writes only ``_activate`` (returning its input
metadata), ``_infer`` and ``_deactivate``. The detector, the daemon, bench and the export parity gate
depend on this contract alone, so a new backend is one file plus one registry line.
"""

from __future__ import annotations

import abc
import time
from typing import Dict, NamedTuple, Optional, Tuple, Union

import numpy as np

from edgekit.core.errors import DataError, DeviceError

Dim = Union[int, str, None]  # a static size, or a named/unknown dynamic axis


class TensorMeta(NamedTuple):
    """Name, shape (dynamic axes as a name or None) and numpy dtype of one model input."""

    name: str
    shape: Tuple[Dim, ...]
    dtype: np.dtype

    def is_dynamic(self, axis: int) -> bool:
        dim = self.shape[axis]
        return not isinstance(dim, int) or dim < 0


class Ticket(NamedTuple):
    """A submitted feed: what the backend returned from ``_submit`` and when it was submitted."""

    handle: object
    start: float


class Runner(abc.ABC):
    """Base class: lifecycle guards, feed validation and timing; backends fill in the ``_`` methods.

    Besides ``infer``, a runner takes work in two halves, ``submit(feed) -> ticket`` and
    ``collect(ticket) -> outputs``, so the pipelined runtime can queue frame i+1 on the device
    while frame i still runs. A synchronous backend (the default here) does the whole inference in
    ``submit``; an asynchronous one (the torch runner's CUDA-graph slots) only enqueues it there and
    says in ``max_in_flight`` how many tickets may be outstanding. Tickets are collected in the order
    they were submitted.
    """

    backend: str = "base"
    max_in_flight: Optional[int] = None  # None: submit finishes the work, any number may wait for collect

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or self.backend
        self.is_active = False
        self._inputs: Dict[str, TensorMeta] = {}
        self._last_inference_time: Optional[float] = None

    # ---- backend hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> Dict[str, TensorMeta]:
        """Load/allocate everything; return the input metadata keyed by input name."""

    @abc.abstractmethod
    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one validated feed; return outputs keyed by output name (numpy arrays)."""

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Release what ``_activate`` took."""

    # ---- the contract --------------------------------------------------------------------------
    def activate(self) -> Runner:
        if self.is_active:
            raise DeviceError(f"runner '{self.name}' is already active", "call deactivate() before activating again")
        inputs = self._activate()
        self._inputs = {name: TensorMeta(m.name, tuple(m.shape), np.dtype(m.dtype)) for name, m in inputs.items()}
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if not self.is_active:
            return  # deactivating twice is harmless (e.g. an exception inside a with-block after a manual call)
        try:
            self._deactivate()
        finally:
            self.is_active = False
            self._inputs = {}

    def input_metadata(self) -> Dict[str, TensorMeta]:
        self._require_active("input_metadata()")
        return dict(self._inputs)

    def infer(self, feed: Dict[str, np.ndarray], check_inputs: bool = True) -> Dict[str, np.ndarray]:
        """Run ``feed`` (input name -> array) and return output name -> array."""
        self._require_active("infer()")
        if check_inputs:
            self._check_feed(feed)
        start = time.perf_counter()
        outputs = self._infer(feed)
        self._last_inference_time = time.perf_counter() - start
        return outputs

    def submit(self, feed: Dict[str, np.ndarray], check_inputs: bool = True) -> Ticket:
        """Start inference of ``feed``; :meth:`collect` returns its outputs."""
        self._require_active("submit()")
        if check_inputs:
            self._check_feed(feed)
        start = time.perf_counter()
        handle = self._submit(feed)
        if self.max_in_flight is None:  # synchronous: the inference is over
            self._last_inference_time = time.perf_counter() - start
        return Ticket(handle, start)

    def collect(self, ticket: Ticket) -> Dict[str, np.ndarray]:
        """The outputs of a submitted feed (waits for the device). For an asynchronous backend the inference
        time is submit to collect, including any wait before collect was called."""
        outputs = self._collect(ticket.handle)
        if self.max_in_flight is not None:
            self._last_inference_time = time.perf_counter() - ticket.start
        return outputs

    def discard_pending(self) -> None:
        """Wait for and drop every submitted, uncollected ticket (a pipeline that stopped early)."""
        if self.is_active:
            self._discard_pending()

    # Synchronous defaults: the whole inference happens in submit.
    def _submit(self, feed: Dict[str, np.ndarray]) -> object:
        return self._infer(feed)

    def _collect(self, handle: object) -> Dict[str, np.ndarray]:
        return handle  # type: ignore[return-value]

    def _discard_pending(self) -> None:
        return None

    def last_inference_time(self) -> Optional[float]:
        """Seconds the last ``infer`` spent inside the backend (None before the first call)."""
        return self._last_inference_time

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.deactivate()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{type(self).__name__}(name={self.name!r}, {state})"

    # ---- guards --------------------------------------------------------------------------------
    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise DeviceError(f"runner '{self.name}' is not active: {what} called before activate()",
                              "use `with runner:` or call runner.activate() first")

    def _check_feed(self, feed: Dict[str, np.ndarray]) -> None:
        missing = sorted(set(self._inputs) - set(feed))
        extra = sorted(set(feed) - set(self._inputs))
        if missing or extra:
            raise DataError(f"runner '{self.name}' feed names {sorted(feed)} do not match model inputs "
                            f"{sorted(self._inputs)} (missing {missing}, unexpected {extra})",
                            "pass exactly one array per model input, keyed by input name")
        for name, meta in self._inputs.items():
            _check_array(self.name, meta, feed[name])


def _check_array(runner_name: str, meta: TensorMeta, arr: np.ndarray) -> None:
    if not isinstance(arr, np.ndarray):
        raise DataError(f"runner '{runner_name}' input '{meta.name}' is a {type(arr).__name__}, not a numpy array",
                        "convert it with numpy.asarray")
    if arr.dtype != meta.dtype:
        raise DataError(f"runner '{runner_name}' input '{meta.name}' has dtype {arr.dtype}, model expects {meta.dtype}",
                        f"cast it with .astype(numpy.{meta.dtype})")
    bad_rank = arr.ndim != len(meta.shape)
    bad_dim = not bad_rank and any(
        not meta.is_dynamic(i) and arr.shape[i] != meta.shape[i] for i in range(arr.ndim))
    if bad_rank or bad_dim:
        raise DataError(f"runner '{runner_name}' input '{meta.name}' has shape {tuple(arr.shape)}, model expects "
                        f"{tuple(meta.shape)}", "preprocess to the model's input size (see the bundle manifest)")


__all__ = ["Runner", "TensorMeta", "Ticket", "Dim"]
