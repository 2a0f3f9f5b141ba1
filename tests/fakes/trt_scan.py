"""Static scan of edgekit's TensorRT attribute use, checked against the snapshotted binding surfaces.

What is traced (AST only, no import of the scanned code):

* the module: ``import tensorrt [as x]``, parameters named ``trt``/``trt_module``/``tensorrt``, and names or
  ``self.`` attributes assigned from those or from a call to ``import_tensorrt()`` (also ``a or b``);
* objects: ``trt.Cls(...)`` is a ``Cls``; factory methods (``builder.create_builder_config()``...) follow
  ``RETURNS``; parameters named like the TensorRT objects (``builder``, ``config``, ``network``, ...)
  in files that use TensorRT are typed by name (``PARAM_TYPES``);
* uses: ``trt.X``, ``trt.X.Y`` (enum members, nested enums, class attributes), ``obj.attr`` on a typed
  object, keyword names of calls, and assignments to properties (read-only ones are errors).

Version guards (the repo's convention, see docs/tensorrt.md): a use inside ``if``/``elif``/``else`` or a
conditional expression whose test compares something named ``*major*`` (or a call such as
``trt_major(trt)``) or ``*version*`` with an int (or a version tuple) is checked only against the
snapshots the test selects; statements after ``if <guard>: ... return/raise`` get the negation. A test
that mentions ``hasattr``/``getattr`` or a ``major``/``version`` name it cannot evaluate exempts the
use entirely.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .trt_surface import Surface

MODULE = "<tensorrt>"
Pred = Callable[[Surface], Optional[bool]]
EXEMPT = "exempt"

RETURNS: Dict[Tuple[str, str], str] = {
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("Builder", "build_serialized_network"): "IHostMemory",
    ("Builder", "build_engine"): "ICudaEngine",
    ("Builder", "build_engine_with_config"): "ICudaEngine",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("ICudaEngine", "serialize"): "IHostMemory",
    ("INetworkDefinition", "get_input"): "ITensor",
    ("INetworkDefinition", "get_output"): "ITensor",
    ("INetworkDefinition", "get_layer"): "ILayer",
    ("ILayer", "get_output"): "ITensor",
    ("ILayer", "get_input"): "ITensor",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_calibration_profile"): "IOptimizationProfile",
}
PARAM_TYPES: Dict[str, str] = {
    "builder": "Builder", "config": "IBuilderConfig", "builder_config": "IBuilderConfig",
    "network": "INetworkDefinition", "engine": "ICudaEngine", "context": "IExecutionContext",
    "parser": "OnnxParser", "runtime": "Runtime", "profile": "IOptimizationProfile",
}
MODULE_PARAMS = {"trt", "trt_module", "tensorrt"}


@dataclass
class Use:
    path: str
    line: int
    owner: Optional[str]  # None: the module; else a class or enum name
    attr: str
    kind: str = "get"  # get | set | kwargs
    kwargs: Tuple[str, ...] = ()
    guards: Tuple[object, ...] = ()  # predicates, or EXEMPT
    hint: str = ""  # how the owner's type was inferred, when that could be wrong

    def applies(self, surface: Surface) -> bool:
        for g in self.guards:
            if g == EXEMPT:
                return False
            if g(surface) is False:  # type: ignore[operator]
                return False
        return True

    def where(self) -> str:
        target = f"trt.{self.attr}" if self.owner is None else f"{self.owner}.{self.attr}"
        extra = f"({', '.join(k + '=' for k in self.kwargs)})" if self.kind == "kwargs" else ""
        return f"{self.path}:{self.line}: {target}{extra}" + (" = ..." if self.kind == "set" else "") + self.hint


def problems(uses: Iterable[Use], surface: Surface) -> List[str]:
    """The uses that do not resolve in this snapshot."""
    out = []
    for u in uses:
        if not u.applies(surface):
            continue
        if not surface.has(u.owner, u.attr):
            out.append(f"{u.where()}: missing in TensorRT {surface.version}")
        elif u.kind == "set":
            entry = surface.member(u.owner, u.attr) if u.owner else None
            if entry is not None and (entry["kind"] != "property" or entry["readonly"]):
                out.append(f"{u.where()}: read-only in TensorRT {surface.version}")
        elif u.kind == "kwargs":
            owner, attr = (u.owner, u.attr)
            if owner is not None and owner in surface.classes and not surface.is_method(owner, attr):
                continue  # calling a property's value: nothing to check
            if owner is None and attr in surface.classes:
                owner, attr = attr, "__init__"
                if not surface.constructible(owner):
                    out.append(f"{u.where()}: TensorRT {surface.version} has no constructor for {owner}")
                    continue
            if owner is None and attr not in surface.functions:
                continue
            allowed = surface.kwargs(owner, attr)
            bad = [k for k in u.kwargs if k not in allowed]
            if bad:
                out.append(f"{u.where()}: TensorRT {surface.version} accepts {allowed}, not {bad}")
    return out


# ------------------------------------------------------------------------------------------ guards
def _names(node: ast.AST) -> List[str]:
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.append(n.id)
        elif isinstance(n, ast.Attribute):
            out.append(n.attr)
    return out


def _is_major(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "major" in name.lower() or "version" in name.lower()


def _const(node: ast.AST) -> object:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


_OPS = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
        ast.GtE: lambda a, b: a >= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def _version(surface: Surface, like: object) -> object:
    parts = tuple(int(p) for p in surface.version.split("."))
    return parts[:len(like)] if isinstance(like, tuple) and all(isinstance(x, int) for x in like) else parts[0]


def guard_of(test: ast.AST) -> Optional[object]:
    """A predicate over snapshots, EXEMPT, or None when the test is no version guard."""
    names = _names(test)
    if any(isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("hasattr", "getattr") for n in ast.walk(test)):
        return EXEMPT
    if not any("major" in n.lower() or "version" in n.lower() for n in names):
        return None
    pred = _pred(test)
    return pred if pred is not None else EXEMPT


def _pred(test: ast.AST) -> Optional[Pred]:
    if isinstance(test, ast.BoolOp):
        parts = [_pred(v) for v in test.values]
        if any(p is None for p in parts):
            return None
        combine = all if isinstance(test.op, ast.And) else any
        return lambda s: combine(p(s) for p in parts)  # type: ignore[misc]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _pred(test.operand)
        return None if inner is None else (lambda s: not inner(s))
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _OPS:
        op = _OPS[type(test.ops[0])]
        left, right = test.left, test.comparators[0]
        if _is_major(left) and _const(right) is not None:
            value = _const(right)
            return lambda s: op(_version(s, value), value)
        if _is_major(right) and _const(left) is not None:
            value = _const(left)
            return lambda s: op(value, _version(s, value))
    return None


def _negate(g: object) -> object:
    return EXEMPT if g == EXEMPT else (lambda s: not g(s))  # type: ignore[operator]


def _terminates(body: Sequence[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break))


# ------------------------------------------------------------------------------------------ scanner
@dataclass
class _Scope:
    env: Dict[str, Optional[str]] = field(default_factory=dict)
    selfenv: Dict[str, str] = field(default_factory=dict)
    by_name: Dict[str, str] = field(default_factory=dict)  # parameters typed by their name alone


class Scanner:
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path, self.tree = path, tree
        self.uses: List[Use] = []
        self.recording = True
        self.uses_trt = any(self._is_trt_source(n) for n in ast.walk(tree))

    @staticmethod
    def _is_trt_source(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(a.name == "tensorrt" for a in node.names)
        if isinstance(node, ast.arg):
            return node.arg in MODULE_PARAMS
        if isinstance(node, ast.Call):
            return _callee(node).endswith("import_tensorrt")
        return False

    def scan(self) -> List[Use]:
        if self.uses_trt:
            self.body(self.tree.body, _Scope(), ())
        return self.uses

    # --- statements
    def body(self, stmts: Sequence[ast.stmt], scope: _Scope, guards: Tuple[object, ...]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                g = guard_of(stmt.test)
                self.expr(stmt.test, scope, guards)
                self.body(stmt.body, scope, guards + ((g,) if g is not None else ()))
                self.body(stmt.orelse, scope, guards + ((_negate(g),) if g is not None else ()))
                if g is not None and _terminates(stmt.body) and not stmt.orelse:
                    guards = guards + (_negate(g),)
            else:
                self.stmt(stmt, scope, guards)

    def stmt(self, stmt: ast.stmt, scope: _Scope, guards: Tuple[object, ...]) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.function(stmt, scope, guards)
        elif isinstance(stmt, ast.ClassDef):
            for base in stmt.bases:
                self.expr(base, scope, guards)
            inner = _Scope(dict(scope.env), {})
            recording, self.recording = self.recording, False
            self.body(stmt.body, inner, guards)  # first pass: learn the types of self.X
            self.recording = recording
            self.body(stmt.body, inner, guards)
        elif isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name == "tensorrt":
                    scope.env[a.asname or a.name] = MODULE
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            value = stmt.value
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if value is not None:
                self.expr(value, scope, guards)
            for target in targets:
                self.assign(target, value, scope, guards)
        else:
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, ast.expr):
                    self.expr(child, scope, guards)
            for name in ("body", "orelse", "finalbody"):
                self.body(getattr(stmt, name, []) or [], scope, guards)
            for handler in getattr(stmt, "handlers", []) or []:
                self.body(handler.body, scope, guards)

    def function(self, fn: ast.AST, scope: _Scope, guards: Tuple[object, ...]) -> None:
        inner = _Scope(dict(scope.env), scope.selfenv, dict(scope.by_name))
        args = fn.args  # type: ignore[attr-defined]
        for a in args.posonlyargs + args.args + args.kwonlyargs if hasattr(args, "posonlyargs") else args.args + args.kwonlyargs:
            if a.arg in MODULE_PARAMS:
                inner.env[a.arg] = MODULE
            elif a.arg in PARAM_TYPES and _untyped(a.annotation):
                inner.env[a.arg] = PARAM_TYPES[a.arg]
                inner.by_name[a.arg] = PARAM_TYPES[a.arg]
            else:
                inner.env[a.arg] = None
                inner.by_name.pop(a.arg, None)
        for d in fn.decorator_list:  # type: ignore[attr-defined]
            self.expr(d, scope, guards)
        self.body(fn.body, inner, guards)  # type: ignore[attr-defined]

    def assign(self, target: ast.expr, value: Optional[ast.expr], scope: _Scope, guards: Tuple[object, ...]) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) \
                else [None] * len(target.elts)
            for t, v in zip(target.elts, values):
                self.assign(t, v, scope, guards)
            return
        t = self.type_of(value, scope) if value is not None else None
        if isinstance(target, ast.Name):
            scope.env[target.id] = t
            scope.by_name.pop(target.id, None)
        elif isinstance(target, ast.Attribute):
            if isinstance(target.value, ast.Name) and target.value.id == "self":
                if t is not None:
                    scope.selfenv[target.attr] = t
                return
            owner = self.type_of(target.value, scope)
            self.expr(target.value, scope, guards)
            if owner is not None and owner != MODULE and not target.attr.startswith("_"):
                self.record(Use(self.path, target.lineno, owner, target.attr, "set", guards=guards,
                                hint=_hint(target.value, scope)))
        else:
            self.expr(target, scope, guards)

    # --- expressions
    def expr(self, node: ast.AST, scope: _Scope, guards: Tuple[object, ...]) -> None:
        if isinstance(node, ast.IfExp):
            g = guard_of(node.test)
            self.expr(node.test, scope, guards)
            self.expr(node.body, scope, guards + ((g,) if g is not None else ()))
            self.expr(node.orelse, scope, guards + ((_negate(g),) if g is not None else ()))
            return
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for v in node.values:
                self.expr(v, scope, guards)
                g = guard_of(v)
                if g is not None:
                    guards = guards + (g,)
            return
        if isinstance(node, ast.Attribute):
            owner = self.type_of(node.value, scope)
            attr = node.attr
            if owner is not None and (not attr.startswith("_") or attr == "__version__"):
                self.record(Use(self.path, node.lineno, None if owner == MODULE else owner, attr, guards=guards,
                                hint=_hint(node.value, scope)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = self.type_of(node.func.value, scope)
            names = tuple(k.arg for k in node.keywords if k.arg is not None)
            if owner is not None and names and not node.func.attr.startswith("_"):
                self.record(Use(self.path, node.lineno, None if owner == MODULE else owner, node.func.attr,
                                "kwargs", names, guards, _hint(node.func.value, scope)))
        for child in ast.iter_child_nodes(node):
            self.expr(child, scope, guards)

    def type_of(self, node: Optional[ast.AST], scope: _Scope) -> Optional[str]:
        if isinstance(node, ast.Name):
            return scope.env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return scope.selfenv.get(node.attr)
            base = self.type_of(node.value, scope)
            if base == MODULE:
                return node.attr if node.attr[:1].isupper() else None
            if base is not None and node.attr[:1].isupper() and not node.attr.isupper():
                return f"{base}.{node.attr}"  # nested enum/class, e.g. ILogger.Severity
            return None
        if isinstance(node, ast.Call):
            if _callee(node).endswith("import_tensorrt"):
                return MODULE
            if isinstance(node.func, ast.Attribute):
                base = self.type_of(node.func.value, scope)
                if base == MODULE:
                    return node.func.attr if node.func.attr[:1].isupper() else None
                if base is not None:
                    return RETURNS.get((base, node.func.attr))
            return None
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            types_ = [self.type_of(v, scope) for v in node.values]
            return MODULE if MODULE in types_ else None
        return None

    def record(self, use: Use) -> None:
        if self.recording:
            self.uses.append(use)


def _hint(node: ast.AST, scope: _Scope) -> str:
    if isinstance(node, ast.Name) and node.id in scope.by_name:
        return (f" [{node.id!r} is taken for a {scope.by_name[node.id]} by its name alone; if it is not one, "
                "annotate the parameter with its real type]")
    return ""


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _untyped(annotation: Optional[ast.AST]) -> bool:
    if annotation is None:
        return True
    text = annotation.id if isinstance(annotation, ast.Name) else getattr(annotation, "value", None)
    return text in ("Any", "object") or (isinstance(annotation, ast.Attribute) and annotation.attr == "Any")


def scan_source(source: str, path: str = "<string>") -> List[Use]:
    return Scanner(path, ast.parse(source)).scan()


def scan_tree(root: Path) -> List[Use]:
    """Every TensorRT use in the .py files under ``root`` (paths reported relative to its parent)."""
    uses: List[Use] = []
    for py in sorted(root.rglob("*.py")):
        uses.extend(scan_source(py.read_text(encoding="utf-8"), str(py.relative_to(root.parent))))
    return uses
