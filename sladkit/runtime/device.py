"""The state of a Jetson that a benchmark must record: model, L4T/JetPack release, nvpmodel mode, pinned clocks.

Reproducible numbers need pinned clocks (`nvpmodel`, `jetson_clocks`) recorded in the report
(`docs/deploy-facts.md`). Standard library only; every field is None with a reason off a Jetson.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sladkit.runtime.power import find_tool

_NVPMODEL_RE = re.compile(r"NV Power Mode:\s*(?P<name>\S+)")
_L4T_RE = re.compile(r"#\s*R(?P<major>\d+)\s*\(release\),\s*REVISION:\s*(?P<revision>\d+(?:\.\d+)*)")
_L4T_FIELD_RE = re.compile(r"(?P<key>GCID|BOARD|EABI|DATE):\s*(?P<value>[^,]+)")
# L4T major release -> JetPack major (NVIDIA's JetPack archive): R32 = 4.x, R34/R35 = 5.x, R36 = 6.x, R38 = 7.x.
_JETPACK_MAJOR = {32: 4, 34: 5, 35: 5, 36: 6, 38: 7}
# Names of the Jetson GPU's devfreq device: 57000000.gpu (Nano), 17000000.gp10b (TX2), 17000000.gv11b
# (Xavier), 17000000.ga10b (Orin, JetPack 5), 17000000.gpu (Orin, JetPack 6).
_GPU_DEVFREQ_RE = re.compile(r"(?:^|\.)(?:gpu|gp10b|gv11b|ga10b|gb10b)$")


def parse_nvpmodel_query(text: str) -> dict | None:
    """{"name": "MAXN", "id": 0} from the output of `nvpmodel -q` (or `-q --verbose`); None if absent.

    The output is `NV Power Mode: <name>` then the mode id on the next line, possibly after
    `NVPM WARN: ...` lines, or prefixed `NVPM VERB: Current mode: ` with --verbose.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        if (m := _NVPMODEL_RE.search(line)) is None:
            continue
        mode_id = None
        for nxt in lines[i + 1 :]:
            if nxt:
                mode_id = int(nxt) if nxt.isdigit() else None
                break
        return {"name": m["name"], "id": mode_id}
    return None


def parse_nv_tegra_release(text: str) -> dict | None:
    """The L4T release from `/etc/nv_tegra_release`; None if its first line is not in the known format.

    `# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: ...` gives
    {"release": "36.4.3", "major": 36, "revision": "4.3", "jetpack_major": 6, "board": "generic", ...}.
    JetPack 4 also writes `REVISION: 5` (L4T 32.5).
    """
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if (m := _L4T_RE.search(first)) is None:
        return None
    major = int(m["major"])
    info: dict = {
        "release": f"{major}.{m['revision']}",
        "major": major,
        "revision": m["revision"],
        "jetpack_major": _JETPACK_MAJOR.get(major),
    }
    for f in _L4T_FIELD_RE.finditer(first[m.end() :]):
        info[f["key"].lower()] = " ".join(f["value"].split())
    return info


def parse_device_tree_model(raw: bytes | str) -> str | None:
    """The board name from `/proc/device-tree/model` (a NUL-terminated string); None if empty."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    text = text.replace("\x00", " ").strip()
    return " ".join(text.split()) or None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _gpu_devfreq_dirs(root: Path) -> list[Path]:
    """Candidate devfreq folders of the GPU, most specific first (each holds min_freq and max_freq)."""
    found = sorted((root / "sys/devices/gpu.0/devfreq").glob("*"))  # Nano, Xavier (JetPack 4)
    found += [p for p in sorted((root / "sys/class/devfreq").glob("*")) if _GPU_DEVFREQ_RE.search(p.name)]
    return [p for p in found if (p / "min_freq").exists() and (p / "max_freq").exists()]


def read_clocks(root: str | os.PathLike = "/") -> tuple[dict | None, str | None]:
    """Whether CPU and GPU clocks are pinned (what `jetson_clocks` does), from sysfs; (clocks, reason).

    Reads, under `root`: `sys/devices/system/cpu/cpuN/cpufreq/scaling_{min,max}_freq` of the online cores
    (kHz) and the GPU's devfreq `min_freq`/`max_freq` (Hz) in `sys/devices/gpu.0/devfreq/*` or
    `sys/class/devfreq/*gpu*` (also `*.gv11b`, `*.ga10b`, `*.gp10b`). A clock is pinned when its minimum
    equals its maximum. The EMC (memory) clock is not checked: it is readable only as root, in debugfs.
    """
    root = Path(root)
    cores = {}
    for cpu in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        if _read_int(cpu / "online") == 0:
            continue
        lo, hi = _read_int(cpu / "cpufreq/scaling_min_freq"), _read_int(cpu / "cpufreq/scaling_max_freq")
        if lo is not None and hi is not None:
            cores[cpu.name] = (lo, hi)
    gpu_dirs = _gpu_devfreq_dirs(root)
    if not cores and not gpu_dirs:
        return None, f"no cpufreq or GPU devfreq under {root / 'sys'}"
    cpu = None
    if cores:
        cpu = {
            "pinned": all(lo == hi for lo, hi in cores.values()),
            "cores": len(cores),
            "min_khz": min(lo for lo, _ in cores.values()),
            "max_khz": max(hi for _, hi in cores.values()),
            "unpinned": [name for name, (lo, hi) in cores.items() if lo != hi],
        }
    gpu = None
    if gpu_dirs:
        d = gpu_dirs[0]
        lo, hi = _read_int(d / "min_freq"), _read_int(d / "max_freq")
        if lo is not None and hi is not None:
            gpu = {"pinned": lo == hi, "min_hz": lo, "max_hz": hi, "devfreq": d.name}
    pinned = cpu["pinned"] and gpu["pinned"] if cpu is not None and gpu is not None else None
    reason = None
    if pinned is None:
        reason = "GPU devfreq min/max not found" if gpu is None else "CPU cpufreq min/max not found"
    return {"pinned": pinned, "cpu": cpu, "gpu": gpu}, reason


def _query_nvpmodel(root: Path, command: Sequence[str] | None) -> tuple[dict | None, str | None]:
    argv = list(command) if command is not None else None
    if argv is None:
        tool = find_tool("nvpmodel", root)
        if tool is None:
            return None, "nvpmodel not found (not a Jetson, or not mounted into the container)"
        argv = [tool]
    try:
        out = subprocess.run([*argv, "-q"], capture_output=True, text=True, errors="replace", timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not run nvpmodel -q: {e}"
    mode = parse_nvpmodel_query(out.stdout + "\n" + out.stderr)
    if mode is None:
        said = next((ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()), "nothing")
        return None, f"nvpmodel -q (exit code {out.returncode}) printed no 'NV Power Mode' line: {said[:200]}"
    return mode, None


def device_state(root: str | os.PathLike = "/", *, nvpmodel: Sequence[str] | None = None) -> dict:
    """What a benchmark on a Jetson must record: model, L4T release, power mode, pinned clocks.

    Each of `model`, `l4t`, `power_mode`, `clocks` is None when unavailable, with the reason under
    `reasons[field]`; nothing raises. `root` is the file-system root to read (tests pass a folder);
    `nvpmodel` replaces the nvpmodel command (`-q` is appended). Reads `proc/device-tree/model`,
    `etc/nv_tegra_release`, the sysfs clocks of `read_clocks`, and runs `nvpmodel -q`.
    """
    root = Path(root)
    state: dict = {"jetson": False, "model": None, "l4t": None, "power_mode": None, "clocks": None}
    reasons: dict[str, str] = {}

    model_path = root / "proc/device-tree/model"
    try:
        state["model"] = parse_device_tree_model(model_path.read_bytes())
        if state["model"] is None:
            reasons["model"] = f"{model_path} is empty"
    except OSError as e:
        reasons["model"] = f"cannot read {model_path}: {e.strerror or e}"

    release_path = root / "etc/nv_tegra_release"
    try:
        state["l4t"] = parse_nv_tegra_release(release_path.read_text(errors="replace"))
        if state["l4t"] is None:
            reasons["l4t"] = f"{release_path} is not in the '# R36 (release), REVISION: 4.3, ...' format"
    except OSError as e:
        reasons["l4t"] = f"cannot read {release_path}: {e.strerror or e} (not a Jetson L4T system)"

    state["power_mode"], why = _query_nvpmodel(root, nvpmodel)
    if why:
        reasons["power_mode"] = why
    state["clocks"], why = read_clocks(root)
    if why:
        reasons["clocks"] = why

    state["jetson"] = state["l4t"] is not None or "jetson" in (state["model"] or "").lower()
    state["reasons"] = reasons
    return state


# The GPU and TensorRT of this machine: what export builds for and what the runtime checks an engine against.


def _gpu(name: str | None, capability: str | None, source: str | None) -> dict:
    return {"name": name, "compute_capability": capability, "source": source}


def gpu_info(capability_hint: str | None = None) -> dict:
    """GPU name and compute capability: cuda-python, then nvidia-smi, then a Jetson's device tree.

    The device tree names a Jetson but not its compute capability: `capability_hint` (the target table's)
    fills it in there.
    """
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, prop = cudart.cudaGetDeviceProperties(0)
        if err == cudart.cudaError_t.cudaSuccess:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return _gpu(name.rstrip("\x00"), f"{prop.major}.{prop.minor}", "cuda")
    except Exception:  # cuda-python missing, or no driver/device
        pass
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
        try:
            lines = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            lines = ""
        if lines.strip():
            name, _, capability = lines.strip().splitlines()[0].rpartition(",")
            return _gpu(name.strip(), capability.strip() or None, "nvidia-smi")
    try:  # Jetsons (JetPack 4/5) have no nvidia-smi; the device tree names the module
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
    except OSError:
        model = ""
    if "NVIDIA" in model or "Jetson" in model:
        return _gpu(model, capability_hint, "device-tree (capability from the target table)")
    return _gpu(None, None, None)


def tensorrt_status() -> tuple[bool, str]:
    """Whether TensorRT can build here: `import tensorrt` works and a CUDA GPU is visible (no torch).

    Returns:
        (True, "TensorRT <version>, GPU <name>") or (False, the reason).
    """
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when its CUDA libraries are missing
        return False, (
            f"tensorrt cannot be imported ({type(e).__name__}: {e}); install it with "
            "pip install 'sladkit[tensorrt]' (on a Jetson it comes with JetPack)"
        )
    gpu = gpu_info()
    if gpu["name"] is None:
        return (
            False,
            f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible (cuda, nvidia-smi, Jetson)",
        )
    return True, f"TensorRT {trt.__version__}, GPU {gpu['name']}"
