"""Strict, typed configuration loading shared by every stage.

Configs are frozen pydantic models that forbid unknown keys. They load from YAML or JSON and take
``key=value`` overrides (dotted keys for nested sections). Priority: overrides > file > defaults.
An unknown key fails naming the key, the file and the closest valid key::

    unknown key 'lr_0' in train.yaml; did you mean 'lr0'?
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError, shorten

T = TypeVar("T", bound=BaseModel)
# Where the config reference lives (generated from the models by edgekit.core.config_doc).
CONFIG_REFERENCE = "docs/config.md"


class StrictModel(BaseModel):
    """Base for every edgekit config: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def read_mapping(path: Path) -> Dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "pass an existing .yaml/.yml/.json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}", "save it as UTF-8 text YAML/JSON") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot parse config {path}: {first}", "fix the YAML/JSON syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple:
    """``a.b=3`` -> (["a", "b"], 3); the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not key=value", "write it as key=value, e.g. imgsz=320")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key", "write it as key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    out = _deep_copy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
    return out


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _unwrap(annotation: Any) -> Tuple[Any, bool]:
    """The pydantic model inside Optional[M] / List[M] / Dict[str, M], and whether it sits under
    a dict (whose key then appears in an error location and must be skipped)."""
    origin = get_origin(annotation)
    if origin in (dict, Dict):
        return _unwrap(get_args(annotation)[1])[0], True
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        inner, keyed = _unwrap(arg) if get_args(arg) else (None, False)
        if inner is not None:
            return inner, keyed
    return (annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None), False


def _model_at(model: Type[BaseModel], loc: Sequence[Any]) -> Optional[Type[BaseModel]]:
    """The nested pydantic model class found by following ``loc`` field names from ``model``."""
    current: Any = model
    skip_key = False
    for part in loc:
        if skip_key:  # a key of a Dict[str, Model] field, not a field name
            skip_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current, skip_key = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def multiple_of_stride(imgsz: int, stride: int = 32) -> int:
    """A train config's ``imgsz`` validator: refuse a size that is not a multiple of the model's largest
    stride, naming the two nearest that are. Ultralytics silently rounds it up, so refusing keeps
    config_resolved.yaml equal to the size really trained (and exported) at."""
    if imgsz % stride:
        low, high = max(stride, imgsz // stride * stride), (imgsz // stride + 1) * stride
        raise ValueError(f"imgsz must be a multiple of {stride} (the model's largest stride), got {imgsz}: "
                         f"use imgsz={low} or imgsz={high}")
    return imgsz


def closest_key(key: str, valid: Sequence[str]) -> Optional[str]:
    matches = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None


def _explain(model: Type[BaseModel], err: ValidationError, source: str) -> ConfigError:
    errors = err.errors()
    # A typo'd key shows up both as unknown and as the missing field it was meant to be: name the typo.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [p for p in first["loc"] if not isinstance(p, int)]
    dotted = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        hint = closest_key(str(loc[-1]), valid)
        nested = _nested_key(parent, str(loc[-1])) if parent is not None else None
        if nested is None and parent is not None:  # a typo of a key one level down: 'epoch' -> stages.0.epochs
            below = _nested_keys(parent)
            best = closest_key(str(loc[-1]), valid + [k for k in below if k not in valid])
            hint, nested = (best, None) if best in valid else (hint, below.get(best or ""))
        # the hint keeps list indices (stages.0.epochs), like the unknown key it corrects
        prefix = [*map(str, first["loc"][:-1])]
        fix = (f"did you mean '{'.'.join(prefix + [nested])}'?" if nested else
               f"did you mean '{'.'.join(prefix + [hint])}'?" if hint else
               f"valid keys here: {', '.join(valid)}" if valid else None)
        # a model that passes another tool's arguments through (train obb: ultralytics.*) names that home too
        other = getattr(parent, "unknown_key_hint", None) if parent is not None else None
        passthrough = other(str(loc[-1])) if callable(other) else None
        if passthrough:
            other_fix = f"'{'.'.join(prefix + [passthrough])}' (passed to Ultralytics as it is)"
            fix = f"{fix[:-1]}, or {other_fix}?" if fix and fix.endswith("?") else f"did you mean {other_fix}?"
        return ConfigError(f"unknown key '{dotted}' in {source}", fix)
    if first["type"] == "missing":
        return ConfigError(f"missing required key '{dotted}' in {source}",
                           f"set it (e.g. {dotted}=...); every key: {CONFIG_REFERENCE}")
    msg = str(first.get("msg", "invalid value"))
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg  # pydantic's prefix says nothing
    value = first.get("input")
    # a whole section/file (a model validator's input) would print the user's file back at them
    got = "" if "got " in msg or isinstance(value, (dict, list)) else f" (got {shorten(repr(value), 80)})"
    where = f"for '{dotted}' in {source}" if dotted else f"in {source}"
    return ConfigError(f"invalid value {where}: {msg}{got}", f"every key, its type and default: {CONFIG_REFERENCE}")


def _nested_key(model: Type[BaseModel], key: str) -> Optional[str]:
    """``section.key`` (``list.0.key`` for a list of sections) when ``key`` is a field one level down.

    An unknown top-level ``epochs`` is then answered with ``stages.0.epochs``, the key that exists.
    """
    for name, field in model.model_fields.items():
        inner, _ = _unwrap(field.annotation)
        if inner is not None and key in inner.model_fields:
            is_list = get_origin(field.annotation) in (list, List)
            return f"{name}.0.{key}" if is_list else f"{name}.{key}"
    return None


def _nested_keys(model: Type[BaseModel]) -> Dict[str, str]:
    """Every field one level down -> its :func:`_nested_key` path (the first section that has it)."""
    out: Dict[str, str] = {}
    for name, field in model.model_fields.items():
        inner, _ = _unwrap(field.annotation)
        for key in inner.model_fields if inner is not None else ():
            out.setdefault(key, _nested_key(model, key) or f"{name}.{key}")
    return out


def _non_finite(data: Any, prefix: str = "") -> Optional[Tuple[str, float]]:
    """The first (dotted key, value) in ``data`` holding a float nan/inf, or None."""
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, float) and not math.isfinite(value):
            return dotted, value
        found = _non_finite(value, dotted + ".") if isinstance(value, (Mapping, list)) else None
        if found:
            return found
    return None


def build_config(model: Type[T], data: Mapping[str, Any], source: str = "config", finite: bool = False) -> T:
    """Validate ``data`` against ``model``; errors become one-line :class:`ConfigError`.

    ``finite``: refuse nan/inf anywhere (YAML ``.nan``, an override ``lr0=nan``): pydantic's float
    bounds are comparisons that nan passes, and a user's nan learning rate trains garbage silently.
    """
    try:
        cfg = model.model_validate(dict(data))
    except ValidationError as e:
        raise _explain(model, e, source) from None
    bad = _non_finite(cfg.model_dump()) if finite else None  # after validation: the string 'nan' is a float now
    if bad is not None:
        raise ConfigError(f"invalid value for '{bad[0]}' in {source}: {bad[1]} is not a finite number",
                          f"set a finite number; every key, its type and default: {CONFIG_REFERENCE}")
    return cfg


def load_config(model: Type[T], path: Optional[Path] = None, overrides: Sequence[str] = ()) -> T:
    """Load ``model`` from an optional YAML/JSON file plus ``key=value`` overrides."""
    data: Dict[str, Any] = read_mapping(Path(path)) if path else {}
    source = Path(path).name if path else "overrides"
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} (with overrides)" if path else "overrides"
    return build_config(model, data, source)


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a resolved config (used for ``config_resolved.yaml``)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__: List[str] = [
    "StrictModel", "read_mapping", "apply_overrides", "parse_override", "build_config", "load_config",
    "dump_config", "closest_key", "multiple_of_stride",
]
