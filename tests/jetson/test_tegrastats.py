"""tegrastats lines of JetPack 4 and 5 (and the 3-value rail form), energy over a timed window."""

from __future__ import annotations

import subprocess

import pytest

from edgekit.jetson.tegrastats import (
    TegrastatsSampler,
    energy_per_frame_mj,
    parse_line,
    parse_log,
    parse_stop_output,
    power_summary,
    start_script,
    stop_script,
    window_energy_mj,
)

JP4 = ("RAM 1728/7763MB (lfb 1117x4MB) SWAP 0/3882MB (cached 0MB) CPU [5%@1190,1%@1190,off,off,off,off] "
       "EMC_FREQ 0% GR3D_FREQ 0% AO@35.5C GPU@35.5C PMIC@100C AUX@35.5C CPU@36C thermal@35.65C "
       "VDD_IN 3757/3757 VDD_CPU_GPU_CV 197/197 VDD_SOC 1066/1066")
JP5 = ("08-23-2024 10:00:00 RAM 1933/6854MB (lfb 3x4MB) SWAP 0/3427MB (cached 0MB) "
       "CPU [2%@1190,1%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0%@1600 GR3D_FREQ 0%@[114] "
       "VDD_IN 3868mW/3868mW VDD_CPU_GPU_CV 444mW/444mW VDD_SOC 1209mW/1209mW")
THREE = ("11-29-2026 10:00:00 RAM 2000/6854MB (lfb 3x4MB) SWAP 0/3427MB (cached 0MB) CPU [10%@1907,off] "
         "GR3D_FREQ 99%@[1109,1109] cpu@40.5C soc2@38.062C VDD_IN 7000mW/6500mW/7200mW VDD_SOC 1500mW/1400mW/1600mW")
NO_RAILS = "RAM 1728/7763MB (lfb 1117x4MB) CPU [5%@1190,off] GR3D_FREQ 12% GPU@35.5C"


def test_jetpack4_line():
    s = parse_line(JP4)
    assert s.stamp is None and (s.ram_used_mb, s.ram_total_mb) == (1728, 7763)
    assert s.cpu_load_pct == [5, 1, None, None, None, None] and s.cpu_freq_mhz[:3] == [1190, 1190, None]
    assert s.gr3d_pct == 0 and s.gr3d_mhz is None and s.emc_pct == 0
    assert s.temps_c == {"AO": 35.5, "GPU": 35.5, "PMIC": 100.0, "AUX": 35.5, "CPU": 36.0, "thermal": 35.65}
    assert s.rails == {"VDD_IN": (3757, 3757), "VDD_CPU_GPU_CV": (197, 197), "VDD_SOC": (1066, 1066)}


def test_jetpack5_line():
    s = parse_line(JP5)
    assert s.stamp == "08-23-2024 10:00:00" and s.ram_used_mb == 1933
    assert s.cpu_load_pct == [2, 1, 0, 0, 0, 0] and s.cpu_freq_mhz == [1190] * 6
    assert (s.gr3d_pct, s.gr3d_mhz) == (0, 114)
    assert s.rails == {"VDD_IN": (3868, 3868), "VDD_CPU_GPU_CV": (444, 444), "VDD_SOC": (1209, 1209)}
    assert "RAM" not in s.rails and "SWAP" not in s.rails


def test_three_value_rails_keep_current_and_average():
    s = parse_line(THREE)
    assert s.rails == {"VDD_IN": (7000, 6500), "VDD_SOC": (1500, 1400)}
    assert (s.gr3d_pct, s.gr3d_mhz) == (99, 1109) and s.temps_c == {"cpu": 40.5, "soc2": 38.062}


def test_missing_rails_are_unavailable_never_zero():
    s = parse_line(NO_RAILS)
    assert s.rails == {} and s.power_mw("VDD_IN") is None
    samples = parse_log(NO_RAILS + "\n" + NO_RAILS, start=0.0, interval_s=1.0)
    assert energy_per_frame_mj(samples, 0.0, 1.0, 10) is None
    summary = power_summary(samples, 0.0, 1.0, 10)
    assert summary["available"] is False and "VDD_IN" in summary["reason"] and "energy_per_frame_mj" not in summary


def test_no_samples_at_all_says_so():
    assert "printed nothing" in power_summary([], 0.0, 1.0, 10)["reason"]


def test_not_tegrastats_lines_are_skipped():
    assert parse_line("") is None and parse_line("tegrastats: started") is None
    assert len(parse_log("junk\n" + JP4 + "\n\n" + JP5)) == 2


def _line(mw: int) -> str:
    return JP4.replace("VDD_IN 3757/3757", f"VDD_IN {mw}/{mw}")


def test_times_spread_over_start_stop_or_the_interval():
    text = "\n".join(_line(1000) for _ in range(4))
    assert [s.t for s in parse_log(text, start=100.0, stop=102.0)] == [100.0, 100.5, 101.0, 101.5]
    assert [s.t for s in parse_log(text, start=100.0, interval_s=0.1)] == pytest.approx([100.0, 100.1, 100.2, 100.3])
    assert [s.t for s in parse_log(text)] == [None] * 4


def test_energy_is_the_trapezoid_over_the_window():
    # 1 W then a ramp to 3 W: samples every second at t = 0..4
    samples = parse_log("\n".join(_line(p) for p in (1000, 1000, 1000, 3000, 3000)), start=0.0, interval_s=1.0)
    assert window_energy_mj(samples, 0.0, 4.0) == pytest.approx(1000 + 1000 + 2000 + 3000)
    # a window between samples interpolates its edges: [0.5, 2.5] = 1000 + 1000*.5 + (1000+2000)/2*.5
    assert window_energy_mj(samples, 0.5, 2.5) == pytest.approx(1000 * 1.5 + 0.5 * (1000 + 2000) / 2)
    assert energy_per_frame_mj(samples, 0.0, 4.0, 70) == pytest.approx(7000 / 70)
    s = power_summary(samples, 0.0, 4.0, 70)
    assert s["available"] and s["rail"] == "VDD_IN" and s["mean_power_mw"] == pytest.approx(1750)
    assert s["rails"]["VDD_IN"]["peak_mw"] == 3000


def test_a_window_the_samples_do_not_cover_is_unavailable():
    samples = parse_log("\n".join(_line(1000) for _ in range(3)), start=0.0, interval_s=1.0)
    assert window_energy_mj(samples, 10.0, 12.0) is None
    assert energy_per_frame_mj(samples, 0.0, 2.0, 0) is None


def test_other_boards_input_rail_is_used():
    nano = JP4.replace("VDD_IN 3757/3757 VDD_CPU_GPU_CV 197/197 VDD_SOC 1066/1066", "POM_5V_IN 2000/2000")
    samples = parse_log(nano + "\n" + nano, start=0.0, interval_s=1.0)
    assert energy_per_frame_mj(samples, 0.0, 1.0, 2) == pytest.approx(1000)


def test_sampler_scripts_run_a_real_process_and_stop_it(tmp_path):
    """The start/stop scripts with a stand-in tegrastats (a shell loop) on PATH."""
    fake = tmp_path / "bin" / "tegrastats"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/argv\nwhile :; do echo '{JP5}' >> \"$4\"; sleep 0.05; done\n")
    fake.chmod(0o755)
    env_path = f"{fake.parent}:/usr/bin:/bin"

    def run_script(script, args):
        return subprocess.run(["sh", "-c", script, "edgekit", *args], capture_output=True, text=True, check=True,
                              env={"PATH": env_path}).stdout

    log = str(tmp_path / "t.log")
    with TegrastatsSampler(log, 50, run_script) as sampler:
        import time

        time.sleep(0.4)
    assert (tmp_path / "argv").read_text().split() == ["--interval", "50", "--logfile", log]
    assert len(sampler.samples) >= 3 and all(s.t is not None for s in sampler.samples)
    assert sampler.samples[0].rails["VDD_IN"] == (3868, 3868)
    pid = int((tmp_path / "t.log.pid").read_text())
    assert _gone(pid)
    assert "tegrastats --interval" in start_script() and "tegrastats --stop" in stop_script()


def _gone(pid: int) -> bool:
    try:  # a zombie (killed, not yet reaped by whoever adopted it) counts as stopped
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_stop_output_parsing():
    text = "@@start\n100.0\n@@stop\n101.0\n@@log\n" + "\n".join([JP5, JP5])
    assert [s.t for s in parse_stop_output(text)] == [100.0, 100.5]
