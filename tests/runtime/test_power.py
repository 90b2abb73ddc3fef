"""Tests of sladkit/runtime/power.py on real tegrastats output lines (no Jetson needed).

Where each sample comes from (public material, found through the code/issue search indexes). "code index
id N" marks a public GitHub file whose repository the index did not name; the line is quoted verbatim.

tegrastats, Orin (JetPack 5/6, `NAME XmW/YmW`):
  ORIN_NANO_LOAD, ORIN_NANO_IDLE   henrygd/beszel agent/gpu_test.go (TestParseJetsonData), Orin Nano 8 GB
  AGX_ORIN_JP5                     code index id 49132184525 (an .rst note: `rudi2$> tegrastats`), AGX Orin
                                   32 GB; two unconnected `NC` channels, `CV0@-256C` temperatures
  AGX_ORIN_NEGATIVE                code index id 13993827917 (a parser's comment), AGX Orin 64 GB;
                                   `VDD_CPU_CV -398mW/-398mW`
  AGX_ORIN_TRIMMED                 henrygd/beszel agent/gpu_test.go: a trimmed line, `VDD_GPU_SOC 2171mW`
tegrastats, Xavier:
  AGX_XAVIER_JP42                  martinkersner/gtop pull #7 (comment of 2019-06-17), AGX Xavier, JetPack 4.2
  AGX_XAVIER_LOAD                  code index id 47234310939 (a README, "An example of the tegrastats
                                   output"), AGX Xavier 32 GB under load, JetPack 4
  AGX_XAVIER_JP5                   code index id 1345240961 (a Rust test), AGX Xavier `GPU 467mW/467mW ...`
                                   (the line starts inside `CPU [...]`, as in that test)
tegrastats, Nano and TX (JetPack 4, `NAME X/Y` without unit):
  NANO_EMULATOR                    rbonghi/jetson_stats tests/tegrastats (its commented Jetson Nano example)
  NANO_IDLE, NANO_IDLE_2           code index ids of two tegrastats parsers' docstrings (`POM_5V_IN ...`)
  TX2_ISSUE                        FindHao/tx-utils issue #3 (2019-09-05)
  TX2_BESZEL                       henrygd/beszel agent/gpu_test.go ("orin-style output ... VDD_SYS_GPU")
  TX2_EMULATOR                     rbonghi/jetson_stats tests/tegrastats (its main example line)
  TX1_NO_RAILS                     hordiales/jetson-tx1-dev SCRIPTS.md (TX1, L4T 28.1: no power rails)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sladkit.errors import ConfigError
from sladkit.runtime.power import PowerMonitor, main_rail, parse_tegrastats_line, total_power_mw

ORIN_NANO_LOAD = (
    "11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
    "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@53.968C soc2@52.437C soc0@50.75C "
    "gpu@53.343C tj@53.968C soc1@51.656C VDD_IN 12479mW/12479mW VDD_CPU_GPU_CV 4667mW/4667mW "
    "VDD_SOC 2817mW/2817mW"
)
ORIN_NANO_IDLE = (
    "06-18-2025 11:25:24 RAM 3452/7620MB (lfb 25x4MB) SWAP 1518/16384MB (cached 174MB) "
    "CPU [1%@1420,2%@1420,0%@1420,2%@1420,2%@729,1%@729] GR3D_FREQ 0% cpu@50.031C soc2@49.031C "
    "soc0@50C gpu@49.031C tj@50.25C soc1@50.25C VDD_IN 4824mW/4824mW VDD_CPU_GPU_CV 518mW/518mW "
    "VDD_SOC 1475mW/1475mW"
)
AGX_ORIN_JP5 = (
    "10-16-2023 10:59:22 RAM 1205/30623MB (lfb 6429x4MB) SWAP 0/15311MB (cached 0MB) "
    "CPU [0%@729,0%@729,1%@729,0%@729,0%@729,0%@730,0%@730,0%@729,0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@204 GR3D_FREQ 0%@114 GR3D2_FREQ 0%@114 NVJPG1 729 VIC_FREQ 729 APE 233 CV0@-256C "
    "CPU@43.5C Tdiode@32.5C SOC2@40.062C SOC0@40.5C CV1@-256C GPU@38.156C SOC1@39.125C CV2@-256C "
    "VDD_GPU_SOC 4788mW/4788mW VDD_CPU_CV 798mW/798mW VIN_SYS_5V0 3842mW/3842mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 707mW/707mW NC 0mW/0mW"
)
AGX_ORIN_NEGATIVE = (
    "03-17-2024 18:54:10 RAM 10239/62841MB (lfb 442x4MB) SWAP 1/31421MB (cached 0MB) "
    "CPU [0%@1728,0%@1728,0%@1728,0%@1728,0%@1420,0%@1420,0%@1420,0%@1420,off,off,off,off] "
    "GR3D_FREQ 0% cpu@37.5C tboard@27C soc2@34.562C tdiode@27.5C soc0@34.531C tj@37.5C soc1@33.656C "
    "VDD_GPU_SOC 1592mW/1592mW VDD_CPU_CV -398mW/-398mW VIN_SYS_5V0 2624mW/2624mW VDDQ_VDD2_1V8AO 403mW/403mW"
)
AGX_ORIN_TRIMMED = "11-14-2024 22:54:33 RAM 4300/30698MB GR3D_FREQ 45% tj@52.468C VDD_GPU_SOC 2171mW"
AGX_XAVIER_JP42 = (
    "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) "
    "CPU [0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% "
    "AO@30C GPU@30.5C Tboard@31C Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C "
    "GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306"
)
AGX_XAVIER_LOAD = (
    "RAM 10881/31919MB (lfb 4230x4MB) SWAP 0/15959MB (cached 0MB) "
    "CPU [17%@1190,17%@1190,18%@1190,25%@1190,17%@1336,15%@1340,23%@1543,15%@1574] EMC_FREQ 55%@2133 "
    "GR3D_FREQ 95%@1377 APE 150 MTS fg 0% bg 10% AO@48C GPU@54.5C Tdiode@53.25C PMIC@100C AUX@46C CPU@49C "
    "thermal@49.45C Tboard@47C GPU 18401/18525 CPU 2301/2330 SOC 4602/4602 CV 0/0 VDDRQ 2914/2911 "
    "SYS5V 4632/4620"
)
AGX_XAVIER_JP5 = (
    "[0%@1190,1%@1190,0%@1190,0%@1189,0%@1190,0%@1191,0%@1190,0%@1190] EMC_FREQ 0%@1331 GR3D_FREQ 0%@114 "
    "VIC_FREQ 115 APE 150 AUX@36C CPU@36.5C thermal@35.7C Tboard@37C AO@35C GPU@35C Tdiode@38.75C PMIC@50C "
    "GPU 467mW/467mW CPU 467mW/467mW SOC 1245mW/1245mW CV 0mW/0mW VDDRQ 311mW/311mW SYS5V 2768mW/2768mW"
)
NANO_EMULATOR = (
    "RAM 1180/3965MB (lfb 1x2MB) SWAP 149/1024MB (cached 7MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [30%@1036,33%@1036,28%@1036,26%@1036] EMC_FREQ 10%@1600 GR3D_FREQ 0%@76 NVENC 716 NVDEC 716 APE 25 "
    "PLL@57C CPU@60.5C PMIC@100C GPU@59C AO@65C thermal@59.75C POM_5V_IN 4520/4680 POM_5V_GPU 0/0 "
    "POM_5V_CPU 1078/1205"
)
NANO_IDLE = (
    "RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) CPU [24%@1224,15%@1224,13%@1224,10%@1224] "
    "EMC_FREQ 0% GR3D_FREQ 0% PLL@21C CPU@25C PMIC@100C GPU@23.5C AO@33.5C thermal@24.5C "
    "POM_5V_IN 2545/2547 POM_5V_GPU 0/0 POM_5V_CPU 549/529"
)
NANO_IDLE_2 = (
    "RAM 1738/3956MB (lfb 172x4MB) SWAP 0/1978MB (cached 0MB) CPU [7%@1224,0%@1224,3%@1224,7%@1224] "
    "EMC_FREQ 0% GR3D_FREQ 0% PLL@29C CPU@31C PMIC@100C GPU@31.5C AO@37C thermal@31.25C "
    "POM_5V_IN 1997/2089 POM_5V_GPU 40/57 POM_5V_CPU 203/289"
)
TX2_ISSUE = (
    "RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% "
    "GR3D_FREQ 0% PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C Tdiode@41.25C "
    "VDD_SYS_GPU 153/158 VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 VDD_SYS_CPU 536/590 "
    "VDD_SYS_DDR 557/601"
)
TX2_BESZEL = (
    "RAM 3276/7859MB (lfb 5x4MB) SWAP 1626/12122MB (cached 181MB) "
    "CPU [44%@1421,49%@2031,67%@2034,17%@1420,25%@1419,8%@1420] EMC_FREQ 1%@1866 GR3D_FREQ 0%@114 APE 150 "
    "MTS fg 1% bg 1% PLL@42.5C MCPU@42.5C PMIC@50C Tboard@38C GPU@39.5C BCPU@42.5C thermal@41.3C "
    "Tdiode@39.25C VDD_SYS_GPU 182/182 VDD_SYS_SOC 730/730 VDD_4V0_WIFI 0/0 VDD_IN 5297/5297 "
    "VDD_SYS_CPU 1917/1917 VDD_SYS_DDR 1241/1241"
)
TX2_EMULATOR = (
    "RAM 4722/7844MB (lfb 1x512kB) CPU [55%@2035,14%@2034,27%@2034,55%@2035,47%@2035,45%@2035] "
    "SWAP 149/1024MB (cached 7MB) EMC_FREQ 2%@1866 GR3D_FREQ 42%@1300 APE 150 MTS fg 0% bg 0% BCPU@-45C "
    "MCPU@-45C GPU@-51C PLL@45C AO@47.5C Tboard@37C Tdiode@46.75C PMIC@100C thermal@46.4C "
    "VDD_IN 14025/14416 VDD_CPU 2209/2538 VDD_GPU 6854/6903 VDD_SOC 1371/1370 VDD_WIFI 19/19 NVENC 716 "
    "NVDEC 716 VDD_DDR 2702/2702"
)
TX1_NO_RAILS = (
    "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 EMC 1%@408 "
    "APE 25 GR3D 3%@76"
)

# (line, expected rails in mW, expected main rail, expected (total mW, source))
CASES = {
    "orin-nano-load": (
        ORIN_NANO_LOAD,
        {"VDD_IN": 12479, "VDD_CPU_GPU_CV": 4667, "VDD_SOC": 2817},
        "VDD_IN",
        (12479, "VDD_IN"),
    ),
    "orin-nano-idle": (
        ORIN_NANO_IDLE,
        {"VDD_IN": 4824, "VDD_CPU_GPU_CV": 518, "VDD_SOC": 1475},
        "VDD_IN",
        (4824, "VDD_IN"),
    ),
    "agx-orin-jp5-nc": (
        AGX_ORIN_JP5,
        {"VDD_GPU_SOC": 4788, "VDD_CPU_CV": 798, "VIN_SYS_5V0": 3842, "VDDQ_VDD2_1V8AO": 707},
        None,
        (4788 + 798 + 3842, "sum:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"),
    ),
    "agx-orin-negative": (
        AGX_ORIN_NEGATIVE,
        {"VDD_GPU_SOC": 1592, "VDD_CPU_CV": -398, "VIN_SYS_5V0": 2624, "VDDQ_VDD2_1V8AO": 403},
        None,
        (1592 - 398 + 2624, "sum:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"),
    ),
    "agx-orin-trimmed": (AGX_ORIN_TRIMMED, {"VDD_GPU_SOC": 2171}, None, (2171, "sum:VDD_GPU_SOC")),
    "agx-xavier-jp42": (
        AGX_XAVIER_JP42,
        {"GPU": 463, "CPU": 618, "SOC": 2936, "CV": 0, "VDDRQ": 309, "SYS5V": 3306},
        None,
        (463 + 618 + 2936 + 0 + 309 + 3306, "sum:GPU+CPU+SOC+CV+VDDRQ+SYS5V"),
    ),
    "agx-xavier-load": (
        AGX_XAVIER_LOAD,
        {"GPU": 18401, "CPU": 2301, "SOC": 4602, "CV": 0, "VDDRQ": 2914, "SYS5V": 4632},
        None,
        (18401 + 2301 + 4602 + 0 + 2914 + 4632, "sum:GPU+CPU+SOC+CV+VDDRQ+SYS5V"),
    ),
    "agx-xavier-jp5": (
        AGX_XAVIER_JP5,
        {"GPU": 467, "CPU": 467, "SOC": 1245, "CV": 0, "VDDRQ": 311, "SYS5V": 2768},
        None,
        (467 + 467 + 1245 + 0 + 311 + 2768, "sum:GPU+CPU+SOC+CV+VDDRQ+SYS5V"),
    ),
    "nano-emulator": (
        NANO_EMULATOR,
        {"POM_5V_IN": 4520, "POM_5V_GPU": 0, "POM_5V_CPU": 1078},
        "POM_5V_IN",
        (4520, "POM_5V_IN"),
    ),
    "nano-idle": (
        NANO_IDLE,
        {"POM_5V_IN": 2545, "POM_5V_GPU": 0, "POM_5V_CPU": 549},
        "POM_5V_IN",
        (2545, "POM_5V_IN"),
    ),
    "nano-idle-2": (
        NANO_IDLE_2,
        {"POM_5V_IN": 1997, "POM_5V_GPU": 40, "POM_5V_CPU": 203},
        "POM_5V_IN",
        (1997, "POM_5V_IN"),
    ),
    "tx2-issue": (
        TX2_ISSUE,
        {
            "VDD_SYS_GPU": 153,
            "VDD_SYS_SOC": 536,
            "VDD_4V0_WIFI": 633,
            "VDD_IN": 3140,
            "VDD_SYS_CPU": 536,
            "VDD_SYS_DDR": 557,
        },
        "VDD_IN",
        (3140, "VDD_IN"),
    ),
    "tx2-beszel": (
        TX2_BESZEL,
        {
            "VDD_SYS_GPU": 182,
            "VDD_SYS_SOC": 730,
            "VDD_4V0_WIFI": 0,
            "VDD_IN": 5297,
            "VDD_SYS_CPU": 1917,
            "VDD_SYS_DDR": 1241,
        },
        "VDD_IN",
        (5297, "VDD_IN"),
    ),
    "tx2-emulator": (
        TX2_EMULATOR,
        {"VDD_IN": 14025, "VDD_CPU": 2209, "VDD_GPU": 6854, "VDD_SOC": 1371, "VDD_WIFI": 19, "VDD_DDR": 2702},
        "VDD_IN",
        (14025, "VDD_IN"),
    ),
    "tx1-no-rails": (TX1_NO_RAILS, {}, None, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_parse_tegrastats_line_on_real_lines(name):
    line, rails, main, total = CASES[name]
    parsed = parse_tegrastats_line(line)
    assert parsed == {k: float(v) for k, v in rails.items()}
    assert all(isinstance(v, float) for v in parsed.values())
    assert main_rail(parsed) == main
    assert total_power_mw(parsed) == total


def test_parse_ignores_every_non_rail_field():
    # RAM/SWAP/IRAM (MB, kB), CPU [...], clocks without a slash or a unit (APE 150, NVENC 716), engines (off),
    # temperatures (cpu@45.5C, CV0@-256C), a trailing newline: none of them is a rail.
    assert set(parse_tegrastats_line(NANO_EMULATOR + "\n")) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}
    assert "NC" not in parse_tegrastats_line(AGX_ORIN_JP5)
    assert parse_tegrastats_line("") == {}
    assert parse_tegrastats_line("NVPM WARN: fan mode is not set!") == {}


def test_main_rail_priority_and_input_rails_only():
    assert main_rail({"VDD_IN": 1, "POM_5V_IN": 2}) == "VDD_IN"
    assert main_rail({"POM_5V_GPU": 1, "POM_5V_IN": 2}) == "POM_5V_IN"
    # 5 V system rails of the AGX modules are not the module input (rbonghi/jetson_stats#344).
    assert main_rail({"VIN_SYS_5V0": 1, "VDD_GPU_SOC": 2}) is None
    assert main_rail({"SYS5V": 1, "GPU": 2}) is None
    assert main_rail({}) is None
    assert total_power_mw({}) is None


# ------------------------------------------------------------------------------------- PowerMonitor


def fake_tegrastats(tmp_path: Path, lines: list[str], *, exit_code: int | None = None, delay: float = 0.0):
    """A stand-in for tegrastats: records its argv, prints `lines` one per --interval, then waits."""
    script = tmp_path / "fake_tegrastats.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys, time
            with open({str(tmp_path / "argv.json")!r}, "w") as f:
                json.dump(sys.argv[1:], f)
            assert sys.argv[1] == "--interval", sys.argv
            interval = int(sys.argv[2]) / 1000
            time.sleep({delay!r})
            for line in {lines!r}:
                print(line, flush=True)
                time.sleep(interval)
            if {exit_code!r} is not None:
                print("tegrastats: cannot open /sys/kernel/debug/clk: Permission denied", file=sys.stderr)
                sys.exit({exit_code!r})
            time.sleep(120)
            """
        )
    )
    return [sys.executable, str(script)]


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_monitor_averages_real_orin_lines(tmp_path):
    lines = [ORIN_NANO_LOAD, ORIN_NANO_IDLE]
    with PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, lines)) as power:
        wait_for(lambda: len(power.samples) == 2)
        assert power.running
    assert not power.running
    assert json.loads((tmp_path / "argv.json").read_text()) == ["--interval", "20"]
    s = power.summary()
    json.dumps(s)  # the profile report embeds it
    assert s["available"] is True and s["reason"] is None
    assert s["samples"] == 2 and s["interval_ms"] == 20 and s["command"][-2:] == ["--interval", "20"]
    assert s["main_rail"] == "VDD_IN"
    assert s["rails"]["VDD_IN"] == {"average_mw": (12479 + 4824) / 2, "peak_mw": 12479}
    assert s["rails"]["VDD_CPU_GPU_CV"] == {"average_mw": (4667 + 518) / 2, "peak_mw": 4667}
    assert s["total"] == {"source": "VDD_IN", "average_mw": (12479 + 4824) / 2, "peak_mw": 12479}
    # mW x s = mJ: 8651.5 mW for 2 s over 100 images.
    assert power.energy_mj_per_image(100, 2.0) == pytest.approx(8651.5 * 2.0 / 100)
    assert power.stop() == s  # idempotent


def test_monitor_sums_rails_on_agx_xavier(tmp_path):
    lines = [AGX_XAVIER_JP42, AGX_XAVIER_LOAD]
    with PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, lines)) as power:
        wait_for(lambda: len(power.samples) == 2)
    s = power.summary()
    assert s["main_rail"] is None
    assert s["total"] == {
        "source": "sum:GPU+CPU+SOC+CV+VDDRQ+SYS5V",
        "average_mw": (7632 + 32850) / 2,
        "peak_mw": 32850,
    }
    assert s["rails"]["GPU"] == {"average_mw": (463 + 18401) / 2, "peak_mw": 18401}


def test_monitor_reset_drops_warmup_samples(tmp_path):
    lines = [ORIN_NANO_LOAD, ORIN_NANO_IDLE, ORIN_NANO_IDLE]
    with PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, lines)) as power:
        wait_for(lambda: len(power.samples) >= 1)
        power.reset()
        wait_for(lambda: power.samples and power.samples[-1]["VDD_IN"] == 4824 and len(power.samples) >= 1)
    assert all(sample["VDD_IN"] == 4824 for sample in power.samples)


def test_missing_tegrastats_is_not_an_error(tmp_path):
    with PowerMonitor(tegrastats=str(tmp_path / "no" / "tegrastats")) as power:
        pass
    s = power.summary()
    assert s["available"] is False and "tegrastats not found" in s["reason"]
    assert s["samples"] == 0 and s["rails"] == {} and s["total"] is None and s["main_rail"] is None
    assert power.energy_mj_per_image(10, 1.0) is None
    json.dumps(s)


def test_default_monitor_never_raises():
    # On this machine (no Jetson) tegrastats is absent; on a Jetson it runs. Neither raises.
    with PowerMonitor(interval_ms=50) as power:
        time.sleep(0.01)
    assert isinstance(power.summary()["available"], bool)


def test_unstartable_command_is_reported(tmp_path):
    not_executable = tmp_path / "tegrastats"
    not_executable.write_text("")
    s = PowerMonitor(command=[str(not_executable)]).start().stop()
    assert s["available"] is False and s["reason"].startswith("could not start")


def test_lines_without_rails_say_run_as_root(tmp_path):
    # AGX_ORIN_NEGATIVE without its rails: what tegrastats prints when it cannot read the INA3221 sensors.
    no_rails = AGX_ORIN_NEGATIVE.split(" VDD_GPU_SOC")[0]
    with PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, [no_rails, no_rails])) as power:
        wait_for(lambda: power._lines == 2)
    s = power.summary()
    assert s["available"] is False and "without power rails" in s["reason"] and "root" in s["reason"]


def test_tegrastats_exit_code_is_reported(tmp_path):
    power = PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, [], exit_code=3)).start()
    wait_for(lambda: not power.running)
    s = power.stop()
    assert s["available"] is False
    assert (
        s["reason"]
        == "tegrastats exited with code 3: tegrastats: cannot open /sys/kernel/debug/clk: Permission denied"
    )


def test_window_shorter_than_one_sample(tmp_path):
    with PowerMonitor(interval_ms=20, command=fake_tegrastats(tmp_path, [ORIN_NANO_IDLE], delay=60)) as power:
        pass
    s = power.summary()
    assert s["available"] is False and s["reason"].startswith("no tegrastats sample within")


def test_invalid_arguments_raise_sladkit_errors():
    with pytest.raises(ConfigError):
        PowerMonitor(interval_ms=0)
    with pytest.raises(ConfigError):
        PowerMonitor().energy_mj_per_image(0, 1.0)


def test_power_module_imports_without_torch():
    code = (
        "import sys, sladkit.runtime.power; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
