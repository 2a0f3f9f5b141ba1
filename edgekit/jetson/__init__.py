"""Remote Jetson devices: ssh (system OpenSSH), tegrastats power sampling, power modes, push/build/bench.

Runs on the host and (tegrastats, power) on the device: Python 3.8, no torch, nothing heavy imported.
"""

from __future__ import annotations

from .device import TARGETS, DeviceInfo, check_edgekit, check_target, parse_probe, probe_script
from .power import PowerMode, PowerSession, parse_nvpmodel_query
from .remote import (
    Device,
    RemoteOptions,
    add_power,
    bench_argv,
    build_argv,
    remote_bench,
    run_bench,
    setup_commands,
)
from .ssh import SshConfig, SshSession, SshTarget, remote_command, rsync_argv, scp_argv, ssh_argv
from .tegrastats import Sample, TegrastatsSampler, energy_per_frame_mj, parse_line, parse_log, power_summary

__all__ = [
    "TARGETS", "DeviceInfo", "check_edgekit", "check_target", "parse_probe", "probe_script",
    "PowerMode", "PowerSession", "parse_nvpmodel_query",
    "Device", "RemoteOptions", "add_power", "bench_argv", "build_argv", "remote_bench", "run_bench", "setup_commands",
    "SshConfig", "SshSession", "SshTarget", "remote_command", "rsync_argv", "scp_argv", "ssh_argv",
    "Sample", "TegrastatsSampler", "energy_per_frame_mj", "parse_line", "parse_log", "power_summary",
]
