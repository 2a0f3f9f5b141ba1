#!/usr/bin/env python3
"""Snapshot the TensorRT Python binding surface from NVIDIA's pybind sources into a JSON file.

Usage: ``python scripts/snapshot_trt_surface.py GIT_DIR TAG [--out tests/fakes/trt_surface]``
where GIT_DIR is a clone (bare or not) of https://github.com/NVIDIA/TensorRT. The sources are read
with ``git show TAG:path``; nothing is copied into this repository, only the derived JSON
(``trt-<major.minor.patch>.json``), whose schema ``tests/fakes/trt_surface.py`` documents.

Hand-written because there is no parser for pybind11 binding code: the C++ is lightly lexed
(comments stripped, a tiny preprocessor for the ``#if`` switches these files use, balanced
parentheses) and only the binding idioms NVIDIA's files use are recognised: ``py::class_<T, Bases...>``,
``py::enum_<T>`` with ``.value``/``.export_values``, ``.def``/``.def_static`` with ``"x"_a`` or
``py::arg("x")`` keyword names, ``.def_property[_readonly]``, ``.def_readwrite/.def_readonly``,
``m.def`` and ``m.attr``. Enum values come from the ``enum`` definitions in ``include/*.h``;
a value that cannot be evaluated is recorded as null. The package's ``tensorrt/__init__.py`` adds
pure-Python functions (``nptype``, ``volume``) and attributes (``DataType.itemsize``, ``Logger.Severity``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

# Values of the preprocessor switches for the public, full build of the bindings:
# EXPORT_ALL_BINDINGS is 1 when building the `tensorrt` module (python/include/ForwardDeclarations.h),
# ENABLE_INETWORK_SERIALIZE is an internal CMake option that is off by default (python/CMakeLists.txt),
# and the pybind11 the wheels are built with is >= 2.6.
MACROS = {"EXPORT_ALL_BINDINGS": 1, "ENABLE_INETWORK_SERIALIZE": 0, "PYBIND11_VERSION_MAJOR": 2,
          "PYBIND11_VERSION_MINOR": 10}
# Enums whose values the brief requires to be determinable (checked after extraction).
REQUIRED_ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "DeviceType", "DataType",
                  "TensorIOMode", "CalibrationAlgoType", "LayerType", "ProfilingVerbosity")


def git(gitdir: str, *args: str) -> str:
    return subprocess.run(["git", "-C", gitdir, *args], check=True, capture_output=True, text=True).stdout


# ----------------------------------------------------------------------------------------------- lexing
def strip_comments(src: str) -> str:
    """Remove // and /* */ comments, keeping string and char literals intact."""
    out: List[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif c in "\"'":
            j = _literal_end(src, i)
            out.append(src[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _literal_end(src: str, i: int) -> int:
    if src[i] == '"' and src[i - 1:i] == "R" and src.startswith('R"(', i - 1):  # raw string R"(...)"
        j = src.find(')"', i)
        return len(src) if j < 0 else j + 2
    quote, j = src[i], i + 1
    while j < len(src) and src[j] != quote:
        j += 2 if src[j] == "\\" else 1
    return j + 1


def _eval_cond(expr: str) -> bool:
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in MACROS else "0", expr)
    expr = re.sub(r"[A-Za-z_]\w*", lambda m: str(MACROS.get(m.group(0), 0)), expr)
    expr = expr.replace("||", " or ").replace("&&", " and ").replace("!", " not ").replace(" not =", "!=")
    try:
        return bool(eval(expr, {"__builtins__": {}}, {}))  # digits and operators only, see above
    except Exception:
        return False


def preprocess(src: str) -> str:
    """Keep the lines a build with MACROS compiles: #if/#ifdef/#ifndef/#elif/#else/#endif."""
    out: List[str] = []
    stack: List[Tuple[bool, bool]] = []  # (this branch active, some branch already taken)
    for line in src.splitlines():
        m = re.match(r"\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", line)
        active = all(a for a, _ in stack)
        if not m:
            out.append(line if active else "")
            continue
        kind, rest = m.group(1), m.group(2).strip()
        if kind in ("if", "ifdef", "ifndef"):
            if kind == "if":
                cond = _eval_cond(rest)
            else:
                cond = (rest in MACROS) == (kind == "ifdef")
            stack.append((cond, cond))
        elif kind == "elif" and stack:
            taken = stack[-1][1]
            cond = not taken and _eval_cond(rest)
            stack[-1] = (cond, taken or cond)
        elif kind == "else" and stack:
            stack[-1] = (not stack[-1][1], True)
        elif kind == "endif" and stack:
            stack.pop()
        out.append("")
    return "\n".join(out)


def matching(src: str, i: int) -> int:
    """Index just past the bracket that closes the one at src[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    depth: List[str] = []
    j = i
    while j < len(src):
        c = src[j]
        if c in "\"'":
            j = _literal_end(src, j)
            continue
        if c in pairs:
            depth.append(pairs[c])
        elif c in ")]}":
            if depth and depth[-1] == c:
                depth.pop()
            if not depth:
                return j + 1
        j += 1
    return len(src)


def split_args(args: str, angle: bool = False) -> List[str]:
    """Split at top-level commas (angle=True also treats <> as brackets, for template arguments)."""
    parts, depth, start, j = [], 0, 0, 0
    opens, closes = ("([{<", ")]}>") if angle else ("([{", ")]}")
    while j < len(args):
        c = args[j]
        if c in "\"'":
            j = _literal_end(args, j)
            continue
        if c in opens:
            depth += 1
        elif c in closes:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(args[start:j].strip())
            start = j + 1
        j += 1
    if args[start:].strip():
        parts.append(args[start:].strip())
    return parts


STRING = r'"((?:[^"\\]|\\.)*)"'


def first_string(arg: str) -> Optional[str]:
    m = re.match(r"\s*" + STRING + r"\s*$", arg)
    return m.group(1) if m else None


def kwarg_names(args: List[str]) -> List[str]:
    names = []
    for a in args:
        m = re.match(r'\s*(?:"(\w+)"_a|py::arg(?:_v)?\s*\(\s*"(\w+)")', a)
        if m:
            names.append(m.group(1) or m.group(2))
    return names


# ------------------------------------------------------------------------------------ binding parser
HEAD = re.compile(r"py::(class_|enum_)\s*<|\bm\s*\.\s*(def|attr)\s*\(|\b([A-Za-z_]\w*)\s*\.\s*(def\w*|value|export_values)\s*\(")


class Surface:
    def __init__(self) -> None:
        self.classes: Dict[str, Dict[str, Any]] = {}
        self.class_targs: Dict[str, List[str]] = {}  # python name -> C++ template arguments
        self.cpp2py: Dict[str, str] = {}
        self.enums: Dict[str, Dict[str, Optional[str]]] = {}  # python name -> member -> C++ expression
        self.enum_cpp: Dict[str, str] = {}  # python name -> C++ type
        self.functions: Dict[str, Dict[str, Any]] = {}
        self.module_attrs: Dict[str, Optional[str]] = {}
        self.vars: Dict[str, str] = {}  # C++ variable holding a class_ -> python name
        self.notes: List[str] = []

    def new_class(self, name: str) -> Dict[str, Any]:
        return self.classes.setdefault(name, {"bases": [], "methods": {}, "properties": {}})

    # --- one file
    def parse(self, src: str, fname: str) -> None:
        src = preprocess(strip_comments(src))
        pos = 0
        while True:
            m = HEAD.search(src, pos)
            if not m:
                return
            if m.group(1):
                pos = self._binding(src, m, fname)
            elif m.group(2) == "def":
                end = matching(src, m.end() - 1)
                args = split_args(src[m.end():end - 1])
                name = first_string(args[0]) if args else None
                if name:
                    self._add_method(self.functions, name, kwarg_names(args[1:]))
                pos = end
            elif m.group(2) == "attr":
                pos = self._module_attr(src, m)
            elif m.group(3) in self.vars:
                pos = self._chain(src, m.end(3), self.vars[m.group(3)], None)
            else:
                pos = m.end()

    def _binding(self, src: str, m: re.Match, fname: str) -> int:
        kind = m.group(1)
        close = _angle_end(src, m.end() - 1)
        targs = split_args(src[m.end():close - 1], angle=True)
        rest = src[close:]
        v = re.match(r"\s*(\w+)?\s*([({])", rest)
        if not v:
            return close
        open_i = close + v.end() - 1
        end = matching(src, open_i)
        cargs = split_args(src[open_i + 1:end - 1])
        name = first_string(cargs[1]) if len(cargs) > 1 else None
        if not name:
            self.notes.append(f"{fname}: unnamed {kind} {targs[:1]}")
            return end
        scope = cargs[0].strip()
        parent = None if scope == "m" else self.vars.get(scope)
        if scope != "m" and parent is None:
            self.notes.append(f"{fname}: {name} bound in unknown scope {scope!r}")
        pyname = f"{parent}.{name}" if parent else name
        if parent:
            self.classes[parent]["properties"][name] = {"readonly": True}
        if kind == "class_":
            self.new_class(pyname)
            self.class_targs[pyname] = targs
            self.cpp2py.setdefault(targs[0], pyname)
            self.cpp2py.setdefault(targs[0].split("::")[-1], pyname)
            enum_cpp = None
        else:
            self.enums.setdefault(pyname, {})
            self.enum_cpp[pyname] = targs[0]
            enum_cpp = targs[0]
        if v.group(1):
            self.vars[v.group(1)] = pyname
        return self._chain(src, end, pyname, enum_cpp, parent)

    def _chain(self, src: str, pos: int, pyname: str, enum_cpp: Optional[str], parent: Optional[str] = None) -> int:
        while True:
            m = re.compile(r"\s*\.\s*(\w+)\s*\(").match(src, pos)
            if not m:
                return pos
            end = matching(src, m.end() - 1)
            self._op(pyname, m.group(1), split_args(src[m.end():end - 1]), enum_cpp, parent)
            pos = end

    def _op(self, pyname: str, op: str, args: List[str], enum_cpp: Optional[str], parent: Optional[str]) -> None:
        if enum_cpp is not None:
            if op == "value" and len(args) >= 2 and first_string(args[0]):
                self.enums[pyname][first_string(args[0])] = args[1]
            elif op == "export_values":
                target = self.classes[parent]["properties"] if parent else None
                for member in self.enums[pyname]:
                    if target is not None:
                        target[member] = {"readonly": True}
                    else:
                        self.module_attrs[member] = f"{pyname}.{member}"
            return
        cls = self.classes[pyname]
        name = first_string(args[0]) if args else None
        if op in ("def", "def_static"):
            if args and args[0].startswith("py::init"):
                name = "__init__"
            if name:
                self._add_method(cls["methods"], name, kwarg_names(args[1:]))
        elif op in ("def_property", "def_property_readonly", "def_readwrite", "def_readonly",
                    "def_property_static", "def_property_readonly_static") and name:
            prop: Dict[str, Any] = {"readonly": op in ("def_property_readonly", "def_readonly",
                                                        "def_property_readonly_static")}
            if op == "def_property" and len(args) > 1 and args[1].strip() == "nullptr":
                prop["writeonly"] = True
            cls["properties"][name] = prop

    @staticmethod
    def _add_method(table: Dict[str, Any], name: str, kwargs: List[str]) -> None:
        entry = table.setdefault(name, {"kwargs": [], "overloads": []})
        entry["overloads"].append(kwargs)
        entry["kwargs"].extend(k for k in kwargs if k not in entry["kwargs"])

    def _module_attr(self, src: str, m: re.Match) -> int:
        end = matching(src, m.end() - 1)
        name = first_string(src[m.end():end - 1])
        a = re.compile(r"\s*=\s*([^;]*);").match(src, end)
        if not name or not a:
            return end
        rhs = a.group(1).strip()
        alias = re.match(r'm\s*\.\s*attr\s*\(\s*"(\w+)"\s*\)$', rhs)
        if alias and alias.group(1) in self.enums:
            self.enums[name] = dict(self.enums[alias.group(1)])
            self.enum_cpp[name] = self.enum_cpp[alias.group(1)]
        elif alias and alias.group(1) in self.classes:
            self.classes[name] = self.classes[alias.group(1)]
        else:
            self.module_attrs[name] = rhs
        return a.end()


def _angle_end(src: str, i: int) -> int:
    depth, j = 0, i
    while j < len(src):
        if src[j] == "<":
            depth += 1
        elif src[j] == ">" and src[j - 1] != "-":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return len(src)


# ------------------------------------------------------------------------------------ header enums
def _safe_eval(expr: str) -> Optional[int]:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    ok = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.LShift, ast.RShift, ast.BitOr,
          ast.BitAnd, ast.Add, ast.Sub, ast.Mult, ast.USub, ast.Invert, ast.UAdd)
    if not all(isinstance(n, ok) for n in ast.walk(tree)):
        return None
    try:
        value = eval(compile(tree, "<enum>", "eval"), {"__builtins__": {}}, {})
    except Exception:
        return None
    return value if isinstance(value, int) else None


class _MemberRef:
    """re.sub callback: a reference to an earlier member of the same enum -> its value."""

    def __init__(self, members: Dict[str, Optional[int]]) -> None:
        self.members = members

    def __call__(self, t: re.Match) -> str:
        if t.group(0)[0].isdigit():
            return t.group(0)
        return str(self.members.get(t.group(1), t.group(0)))


def header_enums(sources: List[str]) -> Dict[str, List[Dict[str, Optional[int]]]]:
    """Every ``enum [class] Name [: type] { ... }`` in the headers: name -> list of definitions."""
    found: Dict[str, List[Dict[str, Optional[int]]]] = {}
    for src in sources:
        src = strip_comments(src)
        for m in re.finditer(r"\benum\s+(?:class\s+|struct\s+)?(\w+)\s*(?::\s*[\w:\s]+?)?\{", src):
            body = src[m.end():matching(src, m.end() - 1) - 1]
            members: Dict[str, Optional[int]] = {}
            nxt: Optional[int] = 0
            for entry in split_args(body):
                e = re.match(r"(\w+)[^=]*(?:=(.*))?$", entry.strip(), re.S)
                if not e:
                    continue
                if e.group(2) is None:
                    value = nxt
                else:
                    expr = re.sub(r"static_cast\s*<[^>]*>", "", e.group(2))
                    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)
                    expr = re.sub(r"(?:\w+::)*(\w+)", _MemberRef(members), expr)
                    value = _safe_eval(expr.strip())
                members[e.group(1)] = value
                nxt = None if value is None else value + 1
            found.setdefault(m.group(1), []).append(members)
    return found


def enum_values(defs: Dict[str, List[Dict[str, Optional[int]]]], cpp_type: str,
                members: Dict[str, Optional[str]]) -> Dict[str, Optional[int]]:
    """Values of one bound enum. A header enum counts only if it has every member the binding names
    (``ErrorCode`` is both TensorRT's and the ONNX parser's, whose header is not in this tree)."""
    cpp = {name: (expr or "").strip().split("::")[-1] for name, expr in members.items()}
    found = [d for d in defs.get(cpp_type.split("::")[-1], []) if all(c in d for c in cpp.values())]
    out: Dict[str, Optional[int]] = {}
    for name, member in cpp.items():
        values = {d[member] for d in found}
        out[name] = values.pop() if len(values) == 1 else None
    return out


# ------------------------------------------------------------------------------- tensorrt/__init__.py
def parse_init(surface: Surface, src: str) -> None:
    """The pure-Python layer: functions, module attributes, and attributes patched onto classes."""
    tree = ast.parse(re.sub(r"##(\w+)##", r"\1", src))

    def walk(body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                numpy_attrs = sorted({a.attr for a in ast.walk(node) if isinstance(a, ast.Attribute)
                                      and isinstance(a.value, ast.Name) and a.value.id == "np"})
                entry: Dict[str, Any] = {"kwargs": [a.arg for a in node.args.args], "python": True}
                if numpy_attrs:
                    entry["numpy_attrs"] = numpy_attrs
                surface.functions[node.name] = entry
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    _assign(surface, target, node.value)
            elif isinstance(node, ast.For):
                _setattr_loop(surface, node)

    walk(tree.body)


def _assign(surface: Surface, target: ast.expr, value: ast.expr) -> None:
    if isinstance(target, ast.Name) and (not target.id.startswith("_") or target.id.startswith("__")):
        surface.module_attrs[target.id] = ast.unparse(value) if hasattr(ast, "unparse") else None
    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        cls = surface.classes.get(target.value.id)
        if cls is None:
            return
        if target.attr.startswith("__") and target.attr.endswith("__"):
            cls["methods"].setdefault(target.attr, {"kwargs": [], "overloads": [[]]})
        else:
            cls["properties"][target.attr] = {"readonly": True}
            src_name = ast.unparse(value) if hasattr(ast, "unparse") else ""
            if src_name in surface.enums:  # Logger.Severity = ILogger.Severity
                alias = f"{target.value.id}.{target.attr}"
                surface.enums[alias] = surface.enums[src_name]
                surface.enum_cpp[alias] = surface.enum_cpp[src_name]


def _setattr_loop(surface: Surface, node: ast.For) -> None:
    """``for attr, value in ILogger.Severity.__members__.items(): setattr(Logger, attr, value)``."""
    text = ast.unparse(node.iter) if hasattr(ast, "unparse") else ""
    m = re.match(r"([\w.]+)\.__members__\.items\(\)$", text)
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setattr"]
    if not m or m.group(1) not in surface.enums or not calls or not isinstance(calls[0].args[0], ast.Name):
        return
    cls = surface.classes.get(calls[0].args[0].id)
    if cls is not None:
        for member in surface.enums[m.group(1)]:
            cls["properties"][member] = {"readonly": True}


# ------------------------------------------------------------------------------------------- main
def snapshot(gitdir: str, tag: str) -> Dict[str, Any]:
    commit = git(gitdir, "rev-parse", f"{tag}^{{commit}}").strip()
    files = git(gitdir, "ls-tree", "-r", "--name-only", commit).splitlines()
    cpp = sorted(f for f in files if re.match(r"python/src/.*\.cpp$", f))
    inits = [f for f in files if re.match(r"python/packaging/(bindings_wheel/)?tensorrt/__init__\.py$", f)]
    headers = sorted(f for f in files if re.match(r"include/NvInfer\w*\.h$", f))
    surface = Surface()
    # pyTensorRT.cpp calls the others; bind order matters only for nested scopes (vars), so
    # foundational types and core first.
    order = sorted(cpp, key=lambda f: (0 if "Foundational" in f else 1 if "pyCore" in f else 2, f))
    for f in order:
        surface.parse(git(gitdir, "show", f"{commit}:{f}"), f)
    for f in inits:
        parse_init(surface, git(gitdir, "show", f"{commit}:{f}"))
    for name, targs in surface.class_targs.items():
        bases = [surface.cpp2py.get(t) or surface.cpp2py.get(t.split("::")[-1]) for t in targs[1:]]
        surface.classes[name]["bases"] = [b for b in bases if b and b != name]
    defs = header_enums([git(gitdir, "show", f"{commit}:{h}") for h in headers])
    enums = {name: enum_values(defs, surface.enum_cpp[name], members) for name, members in surface.enums.items()}
    version_h = git(gitdir, "show", f"{commit}:include/NvInferVersion.h")
    version = ".".join(str(_version_part(version_h, p)) for p in ("MAJOR", "MINOR", "PATCH"))
    for name in REQUIRED_ENUMS:
        if name in enums and any(v is None for v in enums[name].values()):
            surface.notes.append(f"enum {name}: some values not determinable")
    for entry in list(surface.functions.values()) + [m for c in surface.classes.values() for m in c["methods"].values()]:
        if len(entry.get("overloads", [])) <= 1:
            entry.pop("overloads", None)
    return {
        "version": version,
        "source": {"repo": "NVIDIA/TensorRT", "tag": tag, "commit": commit, "files": order + inits + headers,
                   "extractor": "scripts/snapshot_trt_surface.py"},
        "functions": surface.functions,
        "module_attrs": surface.module_attrs,
        "classes": surface.classes,
        "enums": enums,
        "notes": surface.notes,
    }


def _version_part(text: str, part: str) -> int:
    m = re.search(rf"#define\s+NV_TENSORRT_{part}\s+(\w+)", text)
    value = m.group(1) if m else "0"
    if not value.isdigit():  # 10.x: NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE
        m2 = re.search(rf"#define\s+{value}\s+(\d+)", text)
        value = m2.group(1) if m2 else "0"
    return int(value)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gitdir")
    ap.add_argument("tags", nargs="+")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/fakes/trt_surface"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for tag in args.tags:
        data = snapshot(args.gitdir, tag)
        path = out / f"trt-{data['version']}.json"
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        n_methods = sum(len(c["methods"]) for c in data["classes"].values())
        print(f"{path}: {len(data['classes'])} classes, {n_methods} methods, {len(data['enums'])} enums, "
              f"{len(data['functions'])} functions, {len(data['notes'])} notes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
