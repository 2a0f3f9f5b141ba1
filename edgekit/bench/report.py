"""Writing a bench run (``bench.json``, ``bench.md``, PNG plots) and comparing runs.

The output directory follows edgekit's one policy (:mod:`edgekit.core.outdir`): checked before any
work, built in a staging directory beside ``--out`` and renamed into place; only an earlier bench
output (its marker) is ever replaced. Plots need matplotlib, which
a device may lack: then they are skipped and the Markdown says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

from edgekit.core.errors import ConfigError

from .schema import BenchReport, load_report
from .stats import LatencyStats

PathLike = Union[str, "os.PathLike[str]"]
JSON_NAME, MD_NAME = "bench.json", "bench.md"
HIST_NAME, TIMELINE_NAME = "latency_hist.png", "timeline.png"
OUTPUT_NAMES = (JSON_NAME, MD_NAME, HIST_NAME, TIMELINE_NAME)


def _ms(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def _stats_row(name: str, s: LatencyStats) -> str:
    return (f"| {name} | {_ms(s.p50_ms)} | {_ms(s.p90_ms)} | {_ms(s.p99_ms)} | {_ms(s.mean_ms)} | {_ms(s.std_ms)} "
            f"| {s.n} |")


def to_markdown(r: BenchReport) -> str:
    s, lat, tp = r.settings, r.latency, r.throughput
    env = r.environment
    lines = [f"# edgekit bench: {Path(r.bundle.path).name}", "",
             f"{s.backend} / {s.precision} on {s.device} ({env.get('device_model') or env.get('cpu_model', '?')}), "
             f"{r.bundle.imgsz[0]}x{r.bundle.imgsz[1]}, source {s.source.kind}; warm-up {r.warmup.iterations} frames "
             f"({'steady' if r.warmup.steady else 'NOT steady'}), edgekit {r.edgekit_version}, {r.created_utc}", "",
             "| latency (ms) | p50 | p90 | p99 | mean | std | n |", "| --- | --- | --- | --- | --- | --- | --- |",
             _stats_row("compute (backend)", lat.compute), _stats_row("host (copies + compute)", lat.host),
             _stats_row("end to end", lat.end_to_end)]
    lines += [_stats_row(f"  stage: {k}", v) for k, v in lat.stages.items()]
    lines += [_stats_row("end to end, pipelined", tp.pipelined_latency), "",
              "| throughput | FPS |", "| --- | --- |", f"| sequential | {tp.sequential_fps:.1f} |",
              f"| pipelined (queue {s.queue_size}) | {tp.pipelined_fps:.1f} |"]
    if r.batch:
        lines += [f"| runner alone, batch {r.batch.batch} | {r.batch.images_per_s:.1f} |"]
    lines += ["", f"Parity vs golden: **{r.parity.status}**" + (f" ({r.parity.note})" if r.parity.note else "")]
    if r.accuracy:
        a = r.accuracy
        ref = a.reference
        lines.append(f"mAP50 {a.map50:.4f}, mAP50-95 {a.map50_95:.4f} on {a.n_images} images of {a.data}"
                     + (f"; FP32 ONNX reference {ref['map50']:.4f} ({ref['source']}), delta "
                        f"{a.map50_delta_points:+.2f} points" if ref else ""))
    if r.power:
        lines.append(f"Power: {r.power}")
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items()))]
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def write_plots(r: BenchReport, folder: Path) -> Optional[str]:
    """Latency histogram and per-frame timeline PNGs; returns a note when they were skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: plots skipped (pip install matplotlib)"
    t = r.timeline
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(t.end_to_end_ms, bins=40, alpha=0.7, label="end to end")
    ax.hist(t.host_ms, bins=40, alpha=0.7, label="host (infer)")
    ax.set_xlabel("ms")
    ax.set_ylabel("frames")
    ax.legend()
    ax.set_title(f"{r.settings.backend} {r.settings.precision}: latency")
    fig.tight_layout()
    fig.savefig(str(folder / HIST_NAME), dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t.start_s, t.end_to_end_ms, ".", ms=3, label="end to end")
    ax.plot(t.start_s, t.host_ms, ".", ms=3, label="host (infer)")
    ax.set_xlabel("s since start of the timed phase")
    ax.set_ylabel("ms")
    ax.legend()
    ax.set_title("per-frame timeline")
    fig.tight_layout()
    fig.savefig(str(folder / TIMELINE_NAME), dpi=100)
    plt.close(fig)
    return None


WRITER = "bench"  # the output-directory marker's writer (edgekit.core.outdir)


def prepare_out(out: PathLike, sources: Sequence[Optional[PathLike]] = ()) -> Path:
    """Check ``--out`` before any measuring (edgekit.core.outdir's policy); returns it resolved."""
    from edgekit.core.outdir import prepare_output

    return prepare_output(out, WRITER, sources=sources)


def write_outputs(r: BenchReport, out: PathLike, plots: bool = True) -> Path:
    """``bench.json`` + ``bench.md`` (+ PNGs) into ``out``, staged beside it and renamed into place.

    ``out`` may be new, empty or an earlier bench output; anything else is refused in one line.
    """
    from edgekit.core.outdir import staged_output

    target = prepare_out(out)
    with staged_output(target, WRITER) as tmp:
        note = write_plots(r, tmp) if plots else None
        if note and note not in r.notes:
            r.notes.append(note)
        r.write(tmp / JSON_NAME)
        (tmp / MD_NAME).write_text(to_markdown(r), encoding="utf-8")
    return target


# ---- compare --------------------------------------------------------------------------------------
_Metric = Tuple[str, Callable[[BenchReport], Optional[float]], bool]  # name, getter, lower is better
METRICS: List[_Metric] = [
    ("end to end p50 ms", lambda r: r.latency.end_to_end.p50_ms, True),
    ("end to end p99 ms", lambda r: r.latency.end_to_end.p99_ms, True),
    ("host p50 ms", lambda r: r.latency.host.p50_ms, True),
    ("compute p50 ms", lambda r: r.latency.compute.p50_ms, True),
    ("preprocess p50 ms", lambda r: r.latency.stages["preprocess"].p50_ms, True),
    ("decode p50 ms", lambda r: r.latency.stages["decode"].p50_ms, True),
    ("sequential FPS", lambda r: r.throughput.sequential_fps, False),
    ("pipelined FPS", lambda r: r.throughput.pipelined_fps, False),
    ("mAP50", lambda r: r.accuracy.map50 if r.accuracy else None, False),
    ("energy per frame mJ", lambda r: _number((r.power or {}).get("energy_per_frame_mj")), True),
]


def _number(v: object) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def check_comparable(reports: Sequence[Tuple[str, BenchReport]], force: bool = False) -> None:
    """Refuse runs of different models (ONNX sha256) or precisions unless ``force``."""
    name0, first = reports[0]
    for name, r in reports[1:]:
        for what, a, b in (("model (ONNX sha256)", first.bundle.onnx_sha256, r.bundle.onnx_sha256),
                           ("precision", first.settings.precision, r.settings.precision)):
            if a != b and not force:
                raise ConfigError(f"{name} ran a different {what} than {name0} ({b[:12]} vs {a[:12]})",
                                  "compare runs of one model and precision, or pass --force")


def compare_table(paths: Sequence[PathLike], force: bool = False) -> str:
    """A Markdown table of the runs side by side; each cell after the first says its change vs the first."""
    if len(paths) < 2:
        raise ConfigError("bench compare needs at least two bench.json files", "pass two or more bench.json paths")
    reports = [(str(p), load_report(Path(p) / JSON_NAME if Path(p).is_dir() else p)) for p in paths]
    check_comparable(reports, force)
    head = "| metric | " + " | ".join(_label(r, i) for i, (_, r) in enumerate(reports)) + " |"
    rows = [head, "| --- |" + " --- |" * len(reports)]
    for name, get, _lower in METRICS:
        values = [get(r) for _, r in reports]
        if all(v is None for v in values):
            continue
        cells = [_fmt(values[0])] + [_delta(values[0], v) for v in values[1:]]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append("| parity | " + " | ".join(r.parity.status for _, r in reports) + " |")
    return "\n".join(rows)


def _label(r: BenchReport, i: int) -> str:
    s = r.settings
    return f"{chr(65 + i) if i < 26 else i}: {s.backend}/{s.precision}/{s.device} {r.created_utc}"


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"


def _delta(base: Optional[float], v: Optional[float]) -> str:
    if v is None or base is None or base == 0:
        return _fmt(v)
    return f"{v:.4g} ({100.0 * (v - base) / base:+.1f}%)"


__all__ = ["to_markdown", "write_plots", "write_outputs", "prepare_out", "WRITER", "compare_table", "check_comparable", "OUTPUT_NAMES",
           "JSON_NAME", "MD_NAME", "METRICS"]
