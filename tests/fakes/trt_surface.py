"""The real TensorRT Python API surface, snapshotted from NVIDIA's pybind sources, and helpers that make
fakes expose exactly that surface.

The JSON files in ``tests/fakes/trt_surface/`` are written by ``scripts/snapshot_trt_surface.py`` from
the NVIDIA/TensorRT sources at a tag (regenerate, never hand-edit). Schema of ``trt-<version>.json``::

    {"version": "8.5.2",
     "source": {"repo": "NVIDIA/TensorRT", "tag": "8.5.2", "commit": "<sha>", "files": [...], "extractor": ...},
     "functions": {name: {"kwargs": [...], "overloads"?: [[...], ...], "python"?: true, "numpy_attrs"?: [...]}},
     "module_attrs": {name: "<C++/Python expression>" or null},      # float32, bool, __version__, ...
     "classes": {ClassName: {"bases": [ClassName, ...],
                             "methods": {name: {"kwargs": [...], "overloads"?: [[...], ...]}},
                             "properties": {name: {"readonly": bool, "writeonly"?: true}}}},
     "enums": {EnumName: {MEMBER: int or null}},                      # nested: "ILogger.Severity"
     "notes": [...]}

``kwargs`` is the union of the keyword names over a method's overloads (``overloads`` lists each one
when there are several); ``__init__`` is the constructor (a class without one cannot be built from
Python). Nested enums are also listed as read-only properties of their class, and ``export_values``
members (``Logger.WARNING``) as read-only properties. Enum values are null where the C++ header was
not in the tree (the ONNX parser's ``ErrorCode``/``OnnxParserFlag``).
"""

from __future__ import annotations

import enum
import functools
import json
import types
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

SURFACE_DIR = Path(__file__).with_name("trt_surface")
# Which snapshot stands for a bare major version: 8 is the Jetson's (JetPack 5.1), 10 and 11 the newest tags.
DEFAULT_FOR_MAJOR = {8: "8.5.2", 10: "10.16.0", 11: "11.1.0"}


def available_versions() -> List[str]:
    return sorted((p.stem[len("trt-"):] for p in SURFACE_DIR.glob("trt-*.json")),
                  key=lambda v: tuple(int(x) for x in v.split(".")))


def _resolve(version_or_major: Union[int, str]) -> str:
    parts = str(version_or_major).split(".")
    candidate = ".".join((parts + ["0", "0"])[:3])  # "8.5.2.2" -> 8.5.2, "10.3" -> 10.3.0
    if candidate in available_versions():
        return candidate
    major = int(parts[0])
    if major in DEFAULT_FOR_MAJOR:  # a bare major, or an untracked minor: the major's snapshot
        return DEFAULT_FOR_MAJOR[major]
    raise KeyError(f"no TensorRT surface for {version_or_major!r}; snapshots: {', '.join(available_versions())}")


@functools.lru_cache(maxsize=None)
def _load(version: str) -> Surface:
    return Surface(json.loads((SURFACE_DIR / f"trt-{version}.json").read_text()))


def load_surface(version_or_major: Union[int, str]) -> Surface:
    """``load_surface(8)`` / ``("8.5.2.2")`` -> 8.5.2; ``(10)`` -> 10.16.0; ``("10.3")`` -> 10.3.0; ``(11)`` -> 11.1.0."""
    return _load(_resolve(version_or_major))


class Surface:
    """Read access to one snapshot. ``cls=None`` means the module itself."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        self.version: str = data["version"]
        self.major = int(self.version.split(".")[0])
        self.classes: Dict[str, Any] = data["classes"]
        self.enums: Dict[str, Dict[str, Optional[int]]] = data["enums"]
        self.functions: Dict[str, Any] = data["functions"]
        self.module_attrs: Dict[str, Any] = data.get("module_attrs", {})

    def __repr__(self) -> str:
        return f"<TensorRT {self.version} surface>"

    def mro(self, cls: str) -> List[str]:
        """The class and its bases, nearest first."""
        out: List[str] = []
        todo = [cls]
        while todo:
            name = todo.pop(0)
            if name in self.classes and name not in out:
                out.append(name)
                todo.extend(self.classes[name]["bases"])
        return out

    def module_names(self) -> List[str]:
        names = set(self.functions) | set(self.module_attrs)
        names |= {c for c in self.classes if "." not in c} | {e for e in self.enums if "." not in e}
        return sorted(names)

    def has(self, cls: Optional[str], attr: str) -> bool:
        """Does ``trt.attr`` (cls None), ``trt.Cls.attr`` / an instance's ``.attr``, or ``trt.Enum.MEMBER`` exist?"""
        if cls is None:
            return attr in self.module_names()
        if cls in self.enums and cls not in self.classes:
            return attr in self.enums[cls] or attr in ("name", "value", "__members__")
        return any(attr in self.classes[c]["methods"] or attr in self.classes[c]["properties"]
                   for c in self.mro(cls))

    def member(self, cls: str, attr: str) -> Optional[Dict[str, Any]]:
        """The method or property entry (with "kind": "method"|"property") found first along the MRO."""
        for c in self.mro(cls):
            for table, kind in (("methods", "method"), ("properties", "property")):
                entry = self.classes[c][table].get(attr)
                if entry is not None:
                    return dict(entry, kind=kind, owner=c)
        return None

    def is_method(self, cls: Optional[str], attr: str) -> bool:
        if cls is None:
            return attr in self.functions
        entry = self.member(cls, attr)
        return entry is not None and entry["kind"] == "method"

    def kwargs(self, cls: Optional[str], method: str) -> List[str]:
        """Keyword names the real method (cls None: module function) accepts; KeyError if it has none such."""
        if cls is None:
            if method not in self.functions:
                raise KeyError(f"tensorrt {self.version} has no function {method!r}")
            return list(self.functions[method]["kwargs"])
        entry = self.member(cls, method)
        if entry is None or entry["kind"] != "method":
            raise KeyError(f"tensorrt {self.version}: {cls} has no method {method!r}")
        return list(entry["kwargs"])

    def readonly(self, cls: str, prop: str) -> bool:
        entry = self.member(cls, prop)
        if entry is None or entry["kind"] != "property":
            raise KeyError(f"tensorrt {self.version}: {cls} has no property {prop!r}")
        return bool(entry["readonly"])

    def enum_value(self, enum_name: str, member: str) -> Optional[int]:
        """The member's integer value (None where the snapshot could not determine it); KeyError if absent."""
        if enum_name not in self.enums:
            raise KeyError(f"tensorrt {self.version} has no enum {enum_name!r}")
        if member not in self.enums[enum_name]:
            raise KeyError(f"tensorrt {self.version}: {enum_name} has no member {member!r}")
        return self.enums[enum_name][member]

    def constructible(self, cls: str) -> bool:
        return self.member(cls, "__init__") is not None


# --------------------------------------------------------------------------------------- enforcement
def check_kwargs(surface: Surface, cls: Optional[str], method: str, kwargs: Iterable[str]) -> None:
    allowed = surface.kwargs(cls, method)
    bad = [k for k in kwargs if k not in allowed]
    if bad:
        where = f"{cls}.{method}" if cls else method
        raise TypeError(f"{where}(): incompatible function arguments: TensorRT {surface.version} has no keyword "
                        f"{', '.join(repr(b) for b in bad)} (accepts {allowed})")


def make_enum(surface: Surface, name: str) -> type:
    """An ``enum.IntEnum`` with exactly the snapshot's members and values (null values get unique
    placeholders above 10**6). pybind's arithmetic enums support ``int()`` like IntEnum does."""
    members = surface.enums[name]
    values: Dict[str, int] = {}
    placeholder = 10 ** 6
    for member, value in members.items():
        if value is None:
            placeholder += 1
            value = placeholder
        values[member] = value
    # Aliases (ProfilingVerbosity.DEFAULT == LAYER_NAMES_ONLY) collapse onto one member, as IntEnum does.
    return enum.IntEnum(name.split(".")[-1], values)


def strict_class(surface: Surface, name: str, impl_cls: type) -> type:
    """A subclass of ``impl_cls`` that behaves like the real pybind class ``name`` of this snapshot:

    * getting or setting a public attribute the real class lacks raises AttributeError (class level too);
    * setting a read-only property raises AttributeError("can't set attribute");
    * calling a method with a keyword the real method lacks raises TypeError;
    * constructing a class that has no Python constructor raises TypeError, as does an unknown
      constructor keyword. Fakes build such objects with ``Cls._create(*args, **kwargs)``.

    Names starting with ``_`` are the fake's own and pass unchecked. User subclasses (calibrators) may
    add their own attributes, as with real pybind classes.
    """
    if name not in surface.classes:
        raise KeyError(f"tensorrt {surface.version} has no class {name!r}")
    holder: Dict[str, type] = {}

    def own(cls: type, attr: str) -> bool:
        """Is ``attr`` defined by a user subclass below the strict class?"""
        strict = holder["cls"]
        if cls is strict:
            return False
        mro = cls.__mro__
        return any(attr in k.__dict__ for k in mro[:mro.index(strict)])

    class Meta(type(impl_cls)):  # type: ignore[misc]
        def __getattribute__(cls, attr: str) -> Any:
            if not attr.startswith("_") and cls is holder.get("cls") and not surface.has(name, attr):
                raise AttributeError(f"type object 'tensorrt.{name}' has no attribute '{attr}' "
                                     f"(TensorRT {surface.version})")
            return type.__getattribute__(cls, attr)

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            user_init = own(cls, "__init__")
            if not surface.constructible(name):
                raise TypeError(f"tensorrt.{name}: No constructor defined! (TensorRT {surface.version})")
            if not user_init:
                check_kwargs(surface, name, "__init__", kwargs)
            obj = type.__call__(cls, *args, **kwargs)
            if user_init and not obj.__dict__.get("_trt_initialized"):
                # pybind11 raises this at construction when a Python subclass skips the base __init__.
                raise TypeError(f"{cls.__name__}.__init__() must be called when overriding __init__")
            return obj

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "_trt_initialized", True)
        impl_cls.__init__(self, *args, **kwargs)

    def __getattribute__(self: Any, attr: str) -> Any:
        if attr.startswith("_"):
            return impl_cls.__getattribute__(self, attr)
        cls = type(self)
        if cls is not holder["cls"] and (own(cls, attr) or attr in _instance_dict(self)):
            return impl_cls.__getattribute__(self, attr)  # a user subclass's own attribute
        if not surface.has(name, attr):
            raise AttributeError(f"'tensorrt.{name}' object has no attribute '{attr}' (TensorRT {surface.version})")
        value = impl_cls.__getattribute__(self, attr)
        if surface.is_method(name, attr) and callable(value):
            return _checked(surface, name, attr, value)
        return value

    def __setattr__(self: Any, attr: str, value: Any) -> None:
        if attr.startswith("_") or own(type(self), attr):
            impl_cls.__setattr__(self, attr, value)
        elif surface.has(name, attr):
            entry = surface.member(name, attr)
            if entry is None or entry["kind"] != "property" or entry["readonly"]:
                raise AttributeError(f"can't set attribute '{attr}' of tensorrt.{name} (read-only in "
                                     f"TensorRT {surface.version})")
            impl_cls.__setattr__(self, attr, value)
        elif type(self) is not holder["cls"]:  # Python subclasses of pybind classes have a __dict__
            impl_cls.__setattr__(self, attr, value)
        else:
            raise AttributeError(f"'tensorrt.{name}' object has no attribute '{attr}' (TensorRT {surface.version})")

    @classmethod  # type: ignore[misc]
    def _create(cls: type, *args: Any, **kwargs: Any) -> Any:
        return type.__call__(cls, *args, **kwargs)

    namespace = {"__init__": __init__, "__getattribute__": __getattribute__, "__setattr__": __setattr__,
                 "_create": _create,
                 "__module__": "tensorrt", "__qualname__": name, "_trt_surface_name": name}
    strict = Meta(name.split(".")[-1], (impl_cls,), namespace)
    holder["cls"] = strict
    return strict


def _instance_dict(obj: Any) -> Dict[str, Any]:
    try:
        return object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}


def _checked(surface: Surface, cls: Optional[str], method: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        check_kwargs(surface, cls, method, kwargs)
        return fn(*args, **kwargs)

    return call


class _StrictModule(types.ModuleType):
    """Module type swapped in by ``enforce``: unknown public names raise AttributeError."""

    def __getattribute__(self, attr: str) -> Any:
        get = types.ModuleType.__getattribute__
        if attr.startswith("_"):
            return get(self, attr)
        surface: Surface = get(self, "_trt_surface")
        if attr not in surface.module_names() and attr not in get(self, "_trt_extra"):
            raise AttributeError(f"module 'tensorrt' has no attribute '{attr}' (TensorRT {surface.version})")
        value = get(self, attr)
        if attr in surface.functions and callable(value) and not isinstance(value, type):
            return _checked(surface, None, attr, value)
        return value


def enforce(module: types.ModuleType, surface: Surface, extra: Iterable[str] = ()) -> types.ModuleType:
    """Make a fake ``tensorrt`` module strict, in place, and return it.

    * Public names outside the snapshot raise AttributeError (``extra`` lists test-only names, e.g.
      ``calls``, that a fake may keep; prefer ``_``-prefixed names).
    * Module functions check keyword names.
    * Plain classes whose name is a snapshot class become ``strict_class`` subclasses (already strict
      ones are left alone).
    * Enums (``enum.Enum`` subclasses) must have only snapshot members with the snapshot's values,
      else AssertionError: the fake has drifted.
    """
    for attr, value in list(vars(module).items()):
        if attr.startswith("_") or attr in extra:
            continue
        if not surface.has(None, attr):
            raise AssertionError(f"fake tensorrt {surface.version} exposes {attr!r}, which the real module lacks")
        if isinstance(value, type) and issubclass(value, enum.Enum):
            _check_enum(surface, attr, value)
        elif isinstance(value, type) and attr in surface.classes and "_trt_surface_name" not in vars(value):
            setattr(module, attr, strict_class(surface, attr, value))
    module._trt_surface = surface
    module._trt_extra = frozenset(extra)
    module.__class__ = _StrictModule
    return module


def _check_enum(surface: Surface, name: str, enum_cls: type) -> None:
    real = surface.enums.get(name)
    if real is None:
        raise AssertionError(f"fake tensorrt {surface.version}: {name} is not an enum in the real module")
    for member in enum_cls.__members__.values():
        if member.name not in real:
            raise AssertionError(f"fake tensorrt {surface.version}: {name}.{member.name} does not exist")
        want = real[member.name]
        if want is not None and isinstance(member.value, int) and member.value != want:
            raise AssertionError(f"fake tensorrt {surface.version}: {name}.{member.name} = {member.value}, "
                                 f"real value {want}")
