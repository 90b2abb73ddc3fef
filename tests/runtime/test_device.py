"""Tests of sladkit/runtime/device.py on real nvpmodel, L4T release, device-tree and clock outputs (no Jetson).

Sources:
nvpmodel -q: anduril/jetpack-nixos pull #460 (Thor, `NV Power Mode: MAXN` / `0`); rbonghi/jetson_stats
  tests/nvpmodel (show_query: a `NVPM WARN` line first); code index id 54837080849 (`-q --verbose`, Orin Nano,
  JetPack 6.2: `NVPM VERB: Current mode: NV Power Mode: 25W` / `1`).
/etc/nv_tegra_release: code index ids 53760375094 (R36.4.3, with its KERNEL_VARIANT lines), 24958966622
  (R35.4.1, AGX Xavier), 25335889455 (R32.7.6, Nano), 10878535018 (`REVISION: 5`, JetPack 4.5).
/proc/device-tree/model: code index id 71478432454 ("NVIDIA Jetson Orin Nano Engineering Reference Developer
  Kit Super"); open-rdc/orne-box issue #121 (`jetson_clocks --show`: Machine "NVIDIA Jetson Orin NX
  Engineering Reference Developer Kit", cpu MinFreq=729600 MaxFreq=1984000, i.e. clocks not pinned).
GPU devfreq min/max (Hz): rbonghi/jetson_stats tests/jetson_clocks (GPU MinFreq=76800000 MaxFreq=921600000).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sladkit.runtime.device import (
    device_state,
    parse_device_tree_model,
    parse_nv_tegra_release,
    parse_nvpmodel_query,
    read_clocks,
)
from sladkit.runtime.power import find_tool

NVPMODEL_QUERIES = {
    "plain": ("NV Power Mode: MAXN\n0\n", {"name": "MAXN", "id": 0}),
    "warning-first": (
        "NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_15W\n2\n",
        {"name": "MODE_15W", "id": 2},
    ),
    "verbose": (
        "NVPM VERB: Config file: /etc/nvpmodel.conf\n"
        "NVPM VERB: parsing done for /etc/nvpmodel.conf\n"
        "NVPM VERB: Current mode: NV Power Mode: 25W\n"
        "1\n"
        "NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: REAL_VAL: 1 CONF_VAL: 1\n",
        {"name": "25W", "id": 1},
    ),
    "no-id": ("NV Power Mode: MAXN_SUPER\n", {"name": "MAXN_SUPER", "id": None}),
    "not-nvpmodel": ("bash: nvpmodel: command not found\n", None),
}


@pytest.mark.parametrize("name", list(NVPMODEL_QUERIES))
def test_parse_nvpmodel_query(name):
    text, expected = NVPMODEL_QUERIES[name]
    assert parse_nvpmodel_query(text) == expected


R36_4_3 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\n"
    "TARGET_USERSPACE_LIB_DIR=nvidia\n"
    "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)
RELEASES = {
    "r36.4.3": (
        R36_4_3,
        {
            "release": "36.4.3",
            "major": 36,
            "revision": "4.3",
            "jetpack_major": 6,
            "gcid": "38968081",
            "board": "generic",
            "eabi": "aarch64",
            "date": "Wed Jan 8 01:49:37 UTC 2025",
        },
    ),
    "r35.4.1": (
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
        {"release": "35.4.1", "major": 35, "jetpack_major": 5, "board": "t186ref"},
    ),
    "r32.7.6": (
        "# R32 (release), REVISION: 7.6, GCID: 38171779, BOARD: t210ref, EABI: aarch64, DATE: Tue Nov  5 07:46:14 UTC 2024\n",
        {"release": "32.7.6", "major": 32, "jetpack_major": 4, "board": "t210ref"},
    ),
    "r32.5": (
        "# R32 (release), REVISION: 5, GCID: 25531747, BOARD: t186ref, EABI: aarch64, DATE: Sat Nov 07 23:21:05 UTC 2020",
        {"release": "32.5", "revision": "5", "jetpack_major": 4},
    ),
}


@pytest.mark.parametrize("name", list(RELEASES))
def test_parse_nv_tegra_release(name):
    text, expected = RELEASES[name]
    info = parse_nv_tegra_release(text)
    assert info is not None and {k: info[k] for k in expected} == expected


def test_parse_nv_tegra_release_rejects_other_text():
    assert parse_nv_tegra_release("") is None
    assert parse_nv_tegra_release('PRETTY_NAME="Ubuntu 22.04.4 LTS"') is None


def test_parse_device_tree_model():
    raw = b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00"
    assert parse_device_tree_model(raw) == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert parse_device_tree_model(b"\x00") is None


def make_jetson_root(tmp_path: Path, *, pinned: bool) -> Path:
    """A file-system tree shaped like an Orin NX's (values from the sources in the module docstring)."""
    root = tmp_path / "root"
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(
        b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00"
    )
    (root / "etc").mkdir()
    (root / "etc/nv_tegra_release").write_text(R36_4_3)
    for i in range(8):
        cpu = root / f"sys/devices/system/cpu/cpu{i}"
        (cpu / "cpufreq").mkdir(parents=True)
        (cpu / "online").write_text("1\n")
        (cpu / "cpufreq/scaling_min_freq").write_text("1984000\n" if pinned else "729600\n")
        (cpu / "cpufreq/scaling_max_freq").write_text("1984000\n")
    offline = root / "sys/devices/system/cpu/cpu8"  # an offline core has no cpufreq folder
    offline.mkdir()
    (offline / "online").write_text("0\n")
    gpu = root / "sys/class/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    (gpu / "min_freq").write_text("921600000\n" if pinned else "76800000\n")
    (gpu / "max_freq").write_text("921600000\n")
    vic = root / "sys/class/devfreq/15340000.vic"  # not the GPU: ignored
    vic.mkdir()
    (vic / "min_freq").write_text("1\n")
    (vic / "max_freq").write_text("2\n")
    nvpmodel = root / "usr/sbin/nvpmodel"
    nvpmodel.parent.mkdir(parents=True)
    nvpmodel.write_text(
        f"#!{sys.executable}\nprint('NVPM WARN: fan mode is not set!')\nprint('NV Power Mode: MAXN')\nprint(0)\n"
    )
    nvpmodel.chmod(0o755)
    return root


def test_device_state_on_a_jetson_tree(tmp_path):
    state = device_state(make_jetson_root(tmp_path, pinned=False))
    json.dumps(state)
    assert state["jetson"] is True
    assert state["model"] == "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"
    assert state["l4t"]["release"] == "36.4.3" and state["l4t"]["jetpack_major"] == 6
    assert state["power_mode"] == {"name": "MAXN", "id": 0}
    clocks = state["clocks"]
    assert clocks["pinned"] is False
    assert clocks["cpu"] == {
        "pinned": False,
        "cores": 8,
        "min_khz": 729600,
        "max_khz": 1984000,
        "unpinned": [f"cpu{i}" for i in range(8)],
    }
    assert clocks["gpu"] == {
        "pinned": False,
        "min_hz": 76800000,
        "max_hz": 921600000,
        "devfreq": "17000000.gpu",
    }
    assert state["reasons"] == {}


def test_device_state_pinned_clocks(tmp_path):
    clocks, reason = read_clocks(make_jetson_root(tmp_path, pinned=True))
    assert reason is None and clocks["pinned"] is True and clocks["cpu"]["unpinned"] == []


def test_device_state_nvpmodel_command_is_injectable(tmp_path):
    root = make_jetson_root(tmp_path, pinned=True)
    fake = [sys.executable, "-c", "print('NVPM VERB: Current mode: NV Power Mode: 25W'); print(1)"]
    assert device_state(root, nvpmodel=fake)["power_mode"] == {"name": "25W", "id": 1}
    broken = [
        sys.executable,
        "-c",
        "import sys; print('NVPM ERROR: failed to read status', file=sys.stderr); sys.exit(1)",
    ]
    state = device_state(root, nvpmodel=broken)
    assert state["power_mode"] is None
    assert "NVPM ERROR: failed to read status" in state["reasons"]["power_mode"]


def test_device_state_without_a_jetson(tmp_path):
    state = device_state(tmp_path)
    assert {k: state[k] for k in ("jetson", "model", "l4t", "power_mode", "clocks")} == {
        "jetson": False,
        "model": None,
        "l4t": None,
        "power_mode": None,
        "clocks": None,
    }
    assert set(state["reasons"]) == {"model", "l4t", "power_mode", "clocks"}
    assert "nvpmodel not found" in state["reasons"]["power_mode"]


def test_device_state_of_this_machine_never_raises():
    json.dumps(device_state())


def test_find_tool_under_a_root(tmp_path):
    root = make_jetson_root(tmp_path, pinned=True)
    assert find_tool("nvpmodel", root) == str(root / "usr/sbin/nvpmodel")
    assert find_tool("tegrastats", root) is None
