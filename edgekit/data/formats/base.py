"""What every label format shares: the :class:`Issue` a check reports, JSON with line numbers,
number parsing that says what was wrong, and the quadrilateral sanity test.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ERROR = "error"
WARNING = "warning"

# Tolerances for "is this degenerate": relative, so they mean the same in pixels and in [0,1] units.
_MIN_AREA_FRACTION = 1e-9  # polygon area / bounding-square area below this counts as zero
_MIN_SINE = 1e-6  # |sin| of the angle at a corner below this counts as collinear


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset: where (file, 1-based line; 0 = the file as a whole), how bad, what.

    ``code`` is a stable short name of the defect kind (``out-of-range``, ``degenerate``, ...), so
    tools and tests can match on it without parsing the message.
    """

    path: Path
    line: int
    severity: str
    code: str
    message: str

    def format(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "line": self.line, "severity": self.severity, "code": self.code,
                "message": self.message}


def error(path: Path, line: int, code: str, message: str) -> Issue:
    return Issue(Path(path), line, ERROR, code, message)


def warning(path: Path, line: int, code: str, message: str) -> Issue:
    return Issue(Path(path), line, WARNING, code, message)


# Issues about a record's geometry only: the parsers still return the record (a converter clips or
# drops it); any other error means the record could not be built and it is left out.
GEOMETRY_CODES = ("out-of-range", "degenerate")


def record_is_usable(issues: Sequence[Issue]) -> bool:
    return all(i.severity != ERROR or i.code in GEOMETRY_CODES for i in issues)


class LineDict(dict):
    """A JSON object that remembers the 1-based line where it starts (``.line``)."""

    line: int = 0


def loads_with_lines(text: str) -> Any:
    """``json.loads`` whose objects are :class:`LineDict` carrying their line number.

    The stdlib parser exposes no positions, so we hook its pure-Python object parser (a documented
    extension point of ``json.decoder``) and switch to the pure-Python scanner that honours it. This is
    slower than ``json.loads``; readers use it only when a check needs to cite lines.
    """
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        _, start = s_and_end
        obj, end = json.decoder.JSONObject(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo)
        located = LineDict(obj)
        located.line = bisect.bisect_right(line_starts, start - 1)
        return located, end

    decoder = json.JSONDecoder()
    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text)


def json_error_issue(path: Path, exc: json.JSONDecodeError) -> Issue:
    return error(path, exc.lineno, "bad-json", f"invalid JSON: {exc.msg} (column {exc.colno})")


def line_of(obj: Any, default: int = 0) -> int:
    return getattr(obj, "line", default)


def parse_floats(fields: Sequence[str]) -> Tuple[Optional[List[float]], Optional[str]]:
    """Numbers from text fields, or ``(None, reason)`` naming the first bad field (1-based)."""
    values = []
    for i, text in enumerate(fields, start=1):
        try:
            value = float(text)
        except ValueError:
            return None, f"field {i} is not a number: {text!r}"
        if not math.isfinite(value):
            return None, f"field {i} is not finite: {text!r}"
        values.append(value)
    return values, None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quad_defect(corners: Sequence[float]) -> Optional[str]:
    """Why the quadrilateral ``x1 y1 ... x4 y4`` is degenerate (zero area, collinear corners), or None."""
    pts = [(corners[i], corners[i + 1]) for i in range(0, 8, 2)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    extent = max(max(xs) - min(xs), max(ys) - min(ys))
    area = 0.5 * abs(sum(pts[i][0] * pts[i - 3][1] - pts[i - 3][0] * pts[i][1] for i in range(4)))
    if extent <= 0 or area <= _MIN_AREA_FRACTION * extent * extent:
        return "zero area"
    for i in range(4):
        a, b, c = pts[i - 1], pts[i], pts[(i + 1) % 4]
        ab, bc = (b[0] - a[0], b[1] - a[1]), (c[0] - b[0], c[1] - b[1])
        lengths = math.hypot(*ab) * math.hypot(*bc)
        if lengths <= 0:
            return f"corner {i + 1} repeats a neighbouring corner"
        if abs(ab[0] * bc[1] - ab[1] * bc[0]) <= _MIN_SINE * lengths:
            return f"corners {(i - 1) % 4 + 1}, {i + 1}, {(i + 1) % 4 + 1} are collinear"
    return None


def format_number(value: float, digits: int = 6) -> str:
    """Compact text for a coordinate (``%g`` with ``digits`` significant digits)."""
    return f"{value:.{digits}g}"


__all__ = ["Issue", "ERROR", "WARNING", "GEOMETRY_CODES", "record_is_usable", "error", "warning", "LineDict", "loads_with_lines", "json_error_issue",
           "line_of", "parse_floats", "is_number", "quad_defect", "format_number"]
