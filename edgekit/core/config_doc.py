"""Render a config model (a :class:`~edgekit.core.config.StrictModel` tree) as a Markdown reference.

The reference is generated, never hand-written, so it cannot drift from the models: every key with
its type, default and meaning. The meaning is the field's ``description`` if it has one, else the
comment written beside (or on the lines right above) the field in the model's source -- the
comments the code already carries, so a field is documented in exactly one place.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import tokenize
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def field_comments(model: Type[BaseModel]) -> Dict[str, str]:
    """field name -> the comment on its line, or the comment lines right above it, in ``model``'s source."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    comments: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: Dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = _FIELD_LINE.match(line)
        if not match or match.group(1) not in model.model_fields:
            continue
        above: List[str] = []
        prev = number - 1
        while prev in comments and lines[prev - 1].strip().startswith("#"):
            above.insert(0, comments[prev])
            prev -= 1
        text = " ".join(above + ([comments[number]] if number in comments else []))
        if text:
            out[match.group(1)] = text
    return out


def type_name(annotation: Any) -> str:
    """A short, readable type: ``int``, ``int or null``, ``list of int``, ``one of: a, b``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union:
        inner = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin is not None and str(origin).endswith("Literal"):
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (list, List):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin in (dict, Dict):
        return "mapping"
    if isinstance(annotation, type):
        return "path" if annotation.__name__.endswith("Path") else annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: Any) -> Tuple[str, Any]:
    """(text, value) of a field's default; text ``required`` when it has none."""
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**", PydanticUndefined
    if isinstance(value, BaseModel):
        return "(section)", value
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "see below", value
    return f"`{json.dumps(value, default=str)}`", value


def _constraints(field: Any) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def model_rows(model: Type[BaseModel], prefix: str = "", key_name: Optional[Callable[[str, str], str]] = None
               ) -> List[Tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every leaf of ``model``, nested sections flattened with dots.

    ``key_name(dotted, field)`` renames a key (e.g. a CLI flag for an export option).
    """
    rows: List[Tuple[str, str, str, str]] = []
    comments = field_comments(model)
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        meaning = field.description or comments.get(name, "")
        limits = _constraints(field)
        if limits:
            meaning = f"{meaning} ({limits})" if meaning else f"({limits})"
        if nested is not None and get_origin(field.annotation) not in (list, List):
            rows.extend(model_rows(nested, f"{dotted}.", key_name))
            continue
        default_text, _ = _default(field)
        if nested is not None:  # a list of sections (stages): its entries are documented by the caller
            default_text = f"{default_text} (`{dotted}.<name>.<key>`)"
        key = key_name(dotted, name) if key_name else f"`{dotted}`"
        rows.append((key, type_name(field.annotation) if nested is None else f"list of {nested.__name__}",
                     default_text, meaning))
    return rows


def _nested_model(annotation: Any) -> Optional[Type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def render_table(rows: List[Tuple[str, str, str, str]], header: Tuple[str, str, str, str] = ("Key", "Type", "Default", "Meaning")
                 ) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_sections(sections: Mapping[str, str]) -> str:
    """``title -> body`` as Markdown ``##`` sections."""
    return "\n\n".join(f"## {title}\n\n{body.strip()}" for title, body in sections.items()) + "\n"


__all__ = ["field_comments", "type_name", "model_rows", "render_table", "render_sections"]
