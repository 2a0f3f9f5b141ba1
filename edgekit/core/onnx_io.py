"""Read an ONNX file's graph inputs and outputs (names, shapes, dtypes) without the ``onnx`` package.

The device checks that a bundle's ``model.onnx`` really takes the input the manifest promises
before it spends minutes building an engine. Hand-written rather than ``onnx.load`` because the
Jetson's deploy subset does not need the ``onnx`` package at all and onnxruntime would build a
whole inference session to answer: this walks the protobuf wire format (ModelProto.graph ->
GraphProto.input/output/initializer -> ValueInfoProto.type.tensor_type.shape), skipping weights by
their length prefix, so a 100 MB model costs one read and no allocation per weight.

>>> from edgekit.core.onnx_io import read_onnx_io  # doctest: +SKIP
>>> read_onnx_io("bundle/model.onnx").inputs  # doctest: +SKIP
[OnnxTensor(name='images', shape=(1, 3, 640, 640), dtype='float32')]
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, NamedTuple, Tuple, Union

from .errors import ModelError

# TensorProto.DataType -> numpy dtype name
ELEM_TYPES: Dict[int, str] = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}

Dim = Union[int, str]


class OnnxTensor(NamedTuple):
    name: str
    shape: Tuple[Dim, ...]  # an int per static axis, the dim_param name (or "?") per dynamic one
    dtype: str


class OnnxIO(NamedTuple):
    inputs: List[OnnxTensor]  # graph inputs that are not initializers
    outputs: List[OnnxTensor]
    ir_version: int


class _Corrupt(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[Tuple[int, int, Union[int, memoryview]]]:
    """(field number, wire type, value) of one message; length-delimited values as sub-views."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise _Corrupt("truncated field")
            yield field, wire, buf[pos:pos + n]
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _Corrupt(f"unsupported wire type {wire}")
    if pos != len(buf):
        raise _Corrupt("truncated message")


def _dim(buf: memoryview) -> Dim:
    for field, _, value in _fields(buf):
        if field == 1:
            return int(value)  # dim_value
        if field == 2:
            return bytes(value).decode("utf-8", "replace")  # dim_param
    return "?"


def _tensor(buf: memoryview) -> OnnxTensor:
    name, shape, dtype = "", [], "unknown"
    for field, _, value in _fields(buf):
        if field == 1:
            name = bytes(value).decode("utf-8", "replace")
        elif field == 2:  # TypeProto
            for tf, _, tv in _fields(value):
                if tf != 1:  # tensor_type
                    continue
                for ttf, _, ttv in _fields(tv):
                    if ttf == 1:
                        dtype = ELEM_TYPES.get(int(ttv), f"onnx-type-{ttv}")
                    elif ttf == 2:
                        shape = [_dim(dv) for df, _, dv in _fields(ttv) if df == 1]
    return OnnxTensor(name, tuple(shape), dtype)


def _initializer_name(buf: memoryview) -> str:
    for field, _, value in _fields(buf):
        if field == 8:
            return bytes(value).decode("utf-8", "replace")
    return ""


def read_onnx_io(path: Union[str, os.PathLike[str]]) -> OnnxIO:
    """Inputs/outputs of the ONNX file at ``path``; a file that is not ONNX is a one-line ModelError."""
    try:
        with open(path, "rb") as f:
            data = memoryview(f.read())
    except OSError as e:
        raise ModelError(f"cannot read ONNX model {path}: {e.strerror}", "re-export the bundle") from None
    try:
        ir_version, graph = 0, None
        for field, _, value in _fields(data):
            if field == 1:
                ir_version = int(value)
            elif field == 7:
                graph = value
        if graph is None:
            raise _Corrupt("no graph")
        inputs, outputs, inits = [], [], set()
        for field, _, value in _fields(graph):
            if field == 11:
                inputs.append(_tensor(value))
            elif field == 12:
                outputs.append(_tensor(value))
            elif field == 5:
                inits.add(_initializer_name(value))
    except (_Corrupt, TypeError) as e:
        raise ModelError(f"{path} is not a readable ONNX model ({e})", "re-export the bundle (truncated or corrupt file)") \
            from None
    if not outputs:
        raise ModelError(f"{path} is not a readable ONNX model (no graph outputs)", "re-export the bundle")
    return OnnxIO([t for t in inputs if t.name not in inits], outputs, ir_version)


__all__ = ["read_onnx_io", "OnnxIO", "OnnxTensor", "ELEM_TYPES"]
