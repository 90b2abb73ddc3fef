"""Power and device state on NVIDIA Jetson: `tegrastats` rails, `nvpmodel` mode, pinned clocks, L4T release.

Standard library only (the runtime stage runs on Jetson images without torch), and safe everywhere: on a
machine without `tegrastats` or `nvpmodel` nothing raises; the summaries say `available: False` (power)
or hold `None` fields with a reason (device state).

Power comes from `tegrastats --interval MS`, which prints one line per interval; each INA3221 rail appears
as `NAME CUR/AVG` in mW: `VDD_IN 5012mW/5012mW` on JetPack 5/6, `POM_5V_IN 1615/1615` (no unit) on
JetPack 4. The first number is the instantaneous power, the second tegrastats' running average since it
started; this module keeps the first and averages it itself over the measured window.

Which rail is "the board" differs by module (see `INPUT_RAILS` and `total_power_mw`):

* Orin NX / Orin Nano, Xavier NX, TX2: `VDD_IN` is the module input; the other rails are parts of it.
* Nano, TX1: `POM_5V_IN` is the module input (NVIDIA forum, quoted in rbonghi/jetson_stats#51).
* AGX Orin (`VDD_GPU_SOC`, `VDD_CPU_CV`, `VIN_SYS_5V0`, `VDDQ_VDD2_1V8AO`) and AGX Xavier (`GPU`, `CPU`,
  `SOC`, `CV`, `VDDRQ`, `SYS5V`) have no input rail: `VIN_SYS_5V0` / `SYS5V` are the 5 V system (I/O)
  rails, not the total (rbonghi/jetson_stats#344), so the total is the sum of the module rails, as
  jetson-stats computes it. Rails fed from another listed rail are left out of the sum (`SUBSET_RAILS`).
  Either way the carrier board is not measured: a meter at the wall reads more.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sladkit.errors import ConfigError

__all__ = [
    "INPUT_RAILS",
    "SUBSET_RAILS",
    "PowerMonitor",
    "find_tool",
    "main_rail",
    "parse_tegrastats_line",
    "total_power_mw",
]

# ------------------------------------------------------------------------------------------------ rails

# `NAME CUR/AVG`, `NAME CURmW/AVGmW`, or `NAME CURmW` (no average; seen in trimmed logs). A number needs a
# `mW` suffix or a `/`, so `APE 150`, `NVENC 716` (clock rates in MHz) are not rails; the lookahead refuses
# `RAM 2448/7620MB`, `SWAP 0/3810MB`, `IRAM 0/252kB(lfb ...)`. Values can be negative on AGX Orin
# (`VDD_CPU_CV -398mW/-398mW`): the sensor's offset near zero current.
_RAIL_RE = re.compile(
    r"(?<!\S)(?P<name>[A-Z][A-Z0-9_]*) (?P<cur>-?\d+(?:\.\d+)?)(?P<unit>mW)?"
    r"(?:/(?P<avg>-?\d+(?:\.\d+)?)(?:mW)?)?(?=\s|$)"
)
# Rails named `NC` are unconnected INA3221 channels (AGX Orin prints two: `NC 0mW/0mW`).
_NOT_CONNECTED = "NC"

#: Module input rails, in priority order. Their reading is the whole module's power.
INPUT_RAILS: tuple[str, ...] = ("VDD_IN", "POM_5V_IN")

#: Rails that are supplied from another rail on the same line and so are left out of a sum of rails.
#: AGX Orin's DRAM rail is reported to be fed from VIN_SYS_5V0 (NVIDIA forum thread 223111, as cited by
#: public AGX Orin energy scripts); summing both would count DRAM twice.
SUBSET_RAILS: frozenset[str] = frozenset({"VDDQ_VDD2_1V8AO"})


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Rail name -> instantaneous power (mW) for every power rail on one `tegrastats` line.

    Handles JetPack 5/6 (`VDD_IN 3829mW/3829mW`) and JetPack 4 (`POM_5V_IN 1615/1615`) formats, ignores
    every other field (RAM, SWAP, CPU [...], EMC_FREQ, GR3D_FREQ, APE, NVDEC, temperatures like
    `cpu@45.5C`) and unconnected `NC` channels. A line without rails gives `{}` (tegrastats prints no rails
    when not run as root on some JetPack 5/6 boards).
    """
    rails: dict[str, float] = {}
    for m in _RAIL_RE.finditer(line):
        if m["unit"] is None and m["avg"] is None:  # `APE 150`: a clock, not a power
            continue
        if m["name"] == _NOT_CONNECTED:
            continue
        rails[m["name"]] = float(m["cur"])
    return rails


def main_rail(rails: Mapping[str, object]) -> str | None:
    """The module input rail among `rails` (`INPUT_RAILS` order: VDD_IN, then POM_5V_IN), else None.

    None means the module has no input rail (AGX Orin, AGX Xavier): use `total_power_mw`, which then sums
    the module rails. `VIN_SYS_5V0` and `SYS5V` are deliberately not input rails (see the module docstring).
    """
    return next((name for name in INPUT_RAILS if name in rails), None)


def total_power_mw(rails: Mapping[str, float]) -> tuple[float, str] | None:
    """(module power in mW, how it was obtained) for one sample, or None when there are no rails.

    The input rail when there is one (`"VDD_IN"`), else the sum of the rails except `SUBSET_RAILS`
    (`"sum:GPU+CPU+..."`).
    """
    if not rails:
        return None
    if (name := main_rail(rails)) is not None:
        return rails[name], name
    parts = [name for name in rails if name not in SUBSET_RAILS]
    return sum(rails[name] for name in parts), "sum:" + "+".join(parts)


# ------------------------------------------------------------------------------------------------ tools


def find_tool(name: str, root: str | os.PathLike = "/") -> str | None:
    """Path of a Jetson tool (`tegrastats`, `nvpmodel`): PATH, then /usr/bin and /usr/sbin (under `root`).

    With a `root` other than "/" (tests, a mounted image) only `root`/usr/{bin,sbin} are searched.
    """
    root = Path(root)
    if root == Path("/") and (found := shutil.which(name)):
        return found
    for folder in ("usr/bin", "usr/sbin"):
        path = root / folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


# ------------------------------------------------------------------------------------------------ power


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


class PowerMonitor:
    """Samples `tegrastats` in the background while a block runs; never raises for a missing tool.

        with PowerMonitor(interval_ms=100) as power:
            run_the_benchmark()
        power.summary()["total"]["average_mw"], power.energy_mj_per_image(images, seconds)

    Args:
        interval_ms: tegrastats' sampling interval (`--interval`). Runs shorter than one interval get no
            sample: the summary then says so.
        command: the tegrastats command to run instead of the one found (`--interval MS` is appended), e.g.
            `[sys.executable, "fake_tegrastats.py"]` in tests, or `["sudo", "-n", "tegrastats"]` where the
            rails need root.
        tegrastats: path of the tegrastats binary (default: PATH, then /usr/bin/tegrastats).
    """

    def __init__(
        self, interval_ms: int = 100, *, command: Sequence[str] | None = None, tegrastats: str | None = None
    ):
        if int(interval_ms) < 1:
            raise ConfigError(f"power sampling interval must be at least 1 ms, got {interval_ms}")
        self.interval_ms = int(interval_ms)
        self._command = list(command) if command is not None else None
        self._tegrastats = tegrastats
        self._lock = threading.Lock()
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._lines = 0
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stderr = None
        self._argv: list[str] | None = None
        self._reason: str | None = None  # why there is no process (tool missing, failed start)
        self._exit: tuple[int, str] | None = None  # (return code, stderr tail) when it stopped on its own
        self._t0: float | None = None
        self._t1: float | None = None

    # -- lifecycle

    def _resolve_argv(self) -> list[str] | None:
        if self._command is not None:
            return [*self._command, "--interval", str(self.interval_ms)]
        if self._tegrastats is not None:
            path = self._tegrastats if Path(self._tegrastats).is_file() else None
        else:
            path = find_tool("tegrastats")
        if path is None:
            where = self._tegrastats or "PATH or /usr/bin/tegrastats"
            self._reason = f"tegrastats not found ({where}); power is measured only on a Jetson"
            return None
        return [path, "--interval", str(self.interval_ms)]

    def start(self) -> PowerMonitor:
        """Start tegrastats (a no-op if it is missing or already started)."""
        if self._t0 is not None:
            return self
        self._t0 = time.monotonic()
        self._argv = self._resolve_argv()
        if self._argv is None:
            return self
        # A file, not a pipe: a chatty stderr cannot block tegrastats; closed in stop().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as e:
            self._reason = f"could not start {self._argv[0]}: {e}"
            self._stderr.close()
            self._stderr = None
            return self
        self._reader = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                rails = parse_tegrastats_line(line)
                with self._lock:
                    self._lines += 1
                    if rails:
                        self._samples.append((time.monotonic(), rails))
        except (OSError, ValueError):  # stdout closed by stop() while a line was being read
            pass

    def stop(self) -> dict:
        """Stop tegrastats (idempotent) and return `summary()`."""
        if self._t0 is not None and self._t1 is None:
            self._t1 = time.monotonic()
            proc = self._proc
            if proc is not None:
                exited = proc.poll() is not None
                if not exited:
                    proc.terminate()
                    try:
                        proc.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                if self._reader is not None:
                    self._reader.join(timeout=3)
                if proc.stdout is not None:
                    proc.stdout.close()
                if exited:
                    self._exit = (proc.returncode, self._stderr_tail())
                if self._stderr is not None:
                    self._stderr.close()
                    self._stderr = None
        return self.summary()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-2000:].decode(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def __enter__(self) -> PowerMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # a monitor dropped without stop() must not leave tegrastats running
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    # -- results

    @property
    def running(self) -> bool:
        """Whether the tegrastats process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def samples(self) -> list[dict[str, float]]:
        """The rails of every sample so far (rail -> mW), in order."""
        with self._lock:
            return [dict(rails) for _, rails in self._samples]

    def reset(self) -> None:
        """Forget the samples so far (e.g. those taken during a warm-up)."""
        with self._lock:
            self._samples.clear()
            self._lines = 0
        if self._t0 is not None and self._t1 is None:
            self._t0 = time.monotonic()

    def _why_no_samples(self, lines: int, duration: float | None) -> str:
        if self._reason is not None:
            return self._reason
        if lines:
            return (
                f"tegrastats printed {lines} line(s) without power rails; on JetPack 5/6 it reads the "
                "INA3221 rails only as root (run as root, or pass command=['sudo', '-n', 'tegrastats'])"
            )
        if self._exit is not None and self._exit[0] != 0:
            code, err = self._exit
            return f"tegrastats exited with code {code}" + (f": {err}" if err else "")
        window = f"{duration:.3f} s" if duration is not None else "the window"
        return (
            f"no tegrastats sample within {window} (interval {self.interval_ms} ms); "
            "measure a longer run or lower the interval"
        )

    def summary(self) -> dict:
        """A JSON-serialisable report of the samples so far.

        Keys: `available` (bool) and `reason` (why not, else None); `source`, `command`, `interval_ms`,
        `samples`, `duration_s`; `main_rail` (the input rail, None on AGX boards); `total` (the module's
        power: `source` = the input rail or `sum:...`, `average_mw`, `peak_mw`); `rails` (per rail
        `average_mw`, `peak_mw`). Averages are over the samples of the window, of the instantaneous values.
        """
        with self._lock:
            samples = [rails for _, rails in self._samples]
            lines = self._lines
        end = self._t1 if self._t1 is not None else time.monotonic()
        duration = None if self._t0 is None else round(end - self._t0, 3)
        report: dict = {
            "available": False,
            "reason": None,
            "source": "tegrastats",
            "command": self._argv,
            "interval_ms": self.interval_ms,
            "samples": len(samples),
            "duration_s": duration,
            "main_rail": None,
            "total": None,
            "rails": {},
        }
        if not samples:
            report["reason"] = self._why_no_samples(lines, duration)
            return report
        names = list(dict.fromkeys(name for rails in samples for name in rails))
        for name in names:
            values = [rails[name] for rails in samples if name in rails]
            report["rails"][name] = {"average_mw": round(_mean(values), 1), "peak_mw": max(values)}
        totals = [t for rails in samples if (t := total_power_mw(rails)) is not None]
        report["available"] = True
        report["main_rail"] = main_rail(dict.fromkeys(names))
        report["total"] = {
            "source": totals[-1][1],
            "average_mw": round(_mean([v for v, _ in totals]), 1),
            "peak_mw": max(v for v, _ in totals),
        }
        return report

    def energy_mj_per_image(self, images: int, seconds: float) -> float | None:
        """Energy per image (mJ): the module's average power (mW) x `seconds` / `images`; None without samples.

        `seconds` is the time the `images` took (e.g. the sum of the timed iterations); mW x s = mJ.
        """
        if images <= 0 or not seconds > 0:
            raise ConfigError(
                f"energy per image needs images > 0 and seconds > 0, got {images} and {seconds}"
            )
        total = self.summary()["total"]
        if total is None:
            return None
        return total["average_mw"] * seconds / images
