"""``edgekit jetson info|push|build|bench|setup HOST ...``: the remote steps one at a time.

ssh uses your own keys and ~/.ssh/config (or ``--ssh-config``), host-key checking stays on.
``$EDGEKIT_SSH_OPTS`` / ``$EDGEKIT_SSH_CONFIG`` / ``$EDGEKIT_JETSON_DIR`` / ``$EDGEKIT_REMOTE_EDGEKIT``
give the same settings to ``edgekit bench --device jetson``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import click

from edgekit.cli.params import FiniteFloatRange


def _ssh_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--ssh-option", "ssh_option", multiple=True, metavar="KEY=VALUE",
                     help="Extra ssh -o option (repeatable), e.g. UserKnownHostsFile=~/.ssh/jetson_hosts."),
        click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh config file (ssh -F)."),
        click.option("--identity", "-i", type=click.Path(dir_okay=False), help="Private key (ssh -i)."),
        click.option("--connect-timeout", type=click.IntRange(min=1), default=10, show_default=True),
        click.option("--remote-dir", help="edgekit's directory on the device.  [default: ~/edgekit]"),
        click.option("--remote-edgekit", help="edgekit command on the device, e.g. edgekit-venv/bin/edgekit "
                                              "(relative to the remote home).  [default: edgekit]"),
        click.option("--scp", "force_scp", is_flag=True, help="Copy with scp even when rsync is available."),
    ]
    for opt in reversed(options):
        f = opt(f)

    @functools.wraps(f)
    def wrapper(ssh_option: Tuple[str, ...], ssh_config: Optional[str], identity: Optional[str],
                connect_timeout: int, remote_dir: Optional[str], remote_edgekit: Optional[str], force_scp: bool,
                **kw: Any) -> Any:
        from edgekit.jetson import Device, RemoteOptions, SshConfig

        host = kw.pop("host")
        cfg = SshConfig.build(host, ssh_option, ssh_config, identity, connect_timeout)
        opts = RemoteOptions.build(remote_dir, remote_edgekit, use_rsync=not force_scp)
        return f(device=Device(cfg, opts), **kw)

    return wrapper


@click.group("jetson")
def jetson() -> None:
    """Drive a Jetson over ssh: info, push, build, bench, setup."""


@jetson.command("info")
@click.argument("host")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_ssh_options
def info(device: Any, as_json: bool) -> None:
    """Show L4T, board, TensorRT, edgekit version and power mode of HOST (user@addr[:port])."""
    d = device.info().as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for key, value in d.items():
        if key == "power_mode" and value:
            value = f"{value['id']} ({value['name']})"
        click.echo(f"{key:11s} {value if value not in (None, '') else 'unavailable'}")


@jetson.command("push")
@click.argument("host")
@click.argument("bundle", type=click.Path(path_type=Path))
@_ssh_options
def push(device: Any, bundle: Path) -> None:
    """Copy BUNDLE to HOST (staged, then renamed into place)."""
    click.echo(device.push(bundle))


@jetson.command("build", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("build_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--no-push", is_flag=True, help="The bundle is already on the device.")
@_ssh_options
def build(device: Any, bundle: Path, build_args: Tuple[str, ...], no_push: bool) -> None:
    """Build BUNDLE's TensorRT engine on HOST: `edgekit engine build` there, with BUILD_ARGS."""
    device.build(bundle, build_args, push=not no_push)


@jetson.command("bench")
@click.argument("host")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="tensorrt", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--iterations", type=click.IntRange(min=1))
@click.option("--duration", type=FiniteFloatRange(min=0, min_open=True))
@click.option("--warmup", type=click.IntRange(min=0))
@click.option("--power-mode", type=click.IntRange(min=0), help="nvpmodel mode id to bench in (restored afterwards).")
@click.option("--jetson-clocks", is_flag=True, help="Pin clocks with jetson_clocks (restored afterwards).")
@click.option("--interval-ms", type=click.IntRange(min=10), default=100, show_default=True,
              help="tegrastats sampling interval.")
@click.option("--out", type=click.Path(path_type=Path), help="Local results directory.")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json (with power) to stdout.")
@_ssh_options
def bench(device: Any, bundle: Path, backend: str, precision: str, iterations: Optional[int],
          duration: Optional[float], warmup: Optional[int], power_mode: Optional[int], jetson_clocks: bool,
          interval_ms: int, out: Optional[Path], as_json: bool) -> None:
    """Bench BUNDLE on HOST while sampling tegrastats; results (with energy per frame) come back to --out."""
    from edgekit.jetson.remote import power_markdown, run_bench

    settings = {"backend": backend, "precision": precision, "iterations": iterations, "duration_s": duration,
                "warmup": warmup}
    out = out or Path("bench_results") / f"{bundle.name}_{backend}_{precision}_jetson"
    report = run_bench(device, bundle, out, settings, power_mode, jetson_clocks, interval_ms)
    click.echo(json.dumps(report, indent=2) if as_json else power_markdown(report["power"]))
    click.echo(f"wrote {out}/bench.json, bench.md, power.json", err=True)


@jetson.command("setup")
@click.argument("host")
@click.option("--apply", "apply_", is_flag=True, help="Run the commands on HOST (default: print them).")
@click.option("--venv", default="~/edgekit-venv", show_default=True, help="Venv path on the device.")
@click.option("--source", help="What to pip install (a wheel path on the device, or a requirement).  "
                               "[default: edgekit[trt]==THIS_VERSION]")
@_ssh_options
def setup(device: Any, apply_: bool, venv: str, source: Optional[str]) -> None:
    """Print (or --apply) what HOST needs: a venv over the system TensorRT, edgekit's deploy subset, numpy<1.24."""
    from edgekit.jetson.remote import setup_commands
    from edgekit.jetson.ssh import script_command

    commands = setup_commands(venv, source)
    if not apply_:
        click.echo("\n".join(commands))
        click.echo(f"# then: edgekit jetson info {device.where} --remote-edgekit {venv.replace('~/', '')}/bin/edgekit",
                   err=True)
        return
    device.session.run(script_command("set -e\n" + "\n".join(commands)), stream=True)
