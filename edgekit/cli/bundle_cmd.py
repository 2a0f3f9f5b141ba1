"""``edgekit bundle info|check``: what a bundle holds, and whether this machine reproduces its golden outputs.

``check`` is the on-device parity test: it verifies the bundle (schema, every file's sha256, the
ONNX input against the letterbox), runs the golden inputs through the chosen backend and compares
raw outputs and decoded detections with the host's reference under that precision's tolerance.
"""

from __future__ import annotations

import json

import click

from edgekit.core.vocab import BACKENDS, PRECISIONS


@click.group("bundle")
def bundle() -> None:
    """Inspect a deploy bundle and check it on this machine."""


@bundle.command("info")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info(path: str, as_json: bool) -> None:
    """Verify BUNDLE and print its roles, input, classes, calibration and cached engines."""
    from edgekit.deploy.bundle import Bundle

    b = Bundle.open(path)
    if as_json:
        click.echo(json.dumps(b.manifest.model_dump(mode="json"), indent=2))
        return
    m = b.manifest
    h, w = m.preprocess.imgsz
    click.echo(f"bundle      {b.root}  (schema v{m.schema_version}, task {m.task}, target {m.target or 'unspecified'})")
    click.echo(f"classes     {len(m.classes)}: {', '.join(m.classes[:10])}{' ...' if len(m.classes) > 10 else ''}")
    click.echo(f"input       {h}x{w}, letterbox pad {m.preprocess.pad_value}, {m.preprocess.color_order}")
    for role in b.roles:
        e = b.model(role)
        ins = ", ".join(f"{t.name}{list(t.shape)} {t.dtype}" for t in e.inputs)
        click.echo(f"model       {role:<10} {e.file}  ({ins}; opset {e.opset})")
    if m.references:
        click.echo(f"references  {len(m.references)} photo(s) of the default target: {', '.join(m.references)}")
    c = b.calibration
    if c is not None:
        click.echo(f"calibration {c.cache.name}: {c.trt_algorithm} (ranges by {c.method}, {c.n_images} images, "
                   f"header TensorRT {c.trt_version or 'unknown'})")
    engines = sorted(b.engine_cache_dir.glob("*.plan")) if b.engine_cache_dir.is_dir() else []
    click.echo(f"engines     {len(engines)} cached in {b.engine_cache_dir}" +
               "".join(f"\n            {p.name}" for p in engines))
    click.echo("verified    schema, sha256 of every file, ONNX inputs vs the letterbox")


@bundle.command("check")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--backend", type=click.Choice([b for b in BACKENDS if b != "torch"]), default="onnxruntime", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole parity report as JSON.")
def check(path: str, backend: str, precision: str, as_json: bool) -> None:
    """Verify BUNDLE, then run its golden inputs here and compare with the host's outputs (exit 1 if not within tolerance)."""
    from edgekit.core.errors import ModelError
    from edgekit.core.parity import failure_line
    from edgekit.deploy.bundle import Bundle

    report = Bundle.open(path).check_parity(backend, precision)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    for role, r in (report.get("graphs") or {"": report}).items():  # RefDet: each of its two graphs
        det = r.get("detections") or {}
        what = {"": "", "fp32": "per-frame graph "}.get(role, f"{role} ")
        click.echo(f"parity {what}{backend}/{r.get('precision', precision)} on {r['n_images']} golden inputs: raw max "
                   f"abs {r['raw']['max_abs']:.3g}, detections {det.get('matched', 0)}/{det.get('n_ref', 0)} matched "
                   f"-> {'pass' if r['passed'] else 'FAIL'}")
    if not report["passed"]:
        failed = [(role, r) for role, r in (report.get("graphs") or {"": report}).items() if not r["passed"]]
        why = "; ".join(f"{role + ': ' if role else ''}{failure_line(r)}" for role, r in failed)
        raise ModelError(f"{path} does not reproduce its golden outputs on {backend}/{precision}: {why}",
                         "rebuild the engine on this device, or re-export the bundle")
