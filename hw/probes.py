"""Health probes: CPU temperature, under-voltage and throttling, memory, disk, uptime.

`PiProbes` reads the Pi's own reports (sysfs, /proc, `vcgencmd get_throttled`);
`root` and `vcgencmd` are arguments so its parsing runs in tests against a
recorded tree. `MockProbes` returns plausible values a test or the demo can change
(`set(under_voltage=True)`), and the real free space of the folder it is asked about.
"""

import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

# Bits of the firmware's get_throttled word (Raspberry Pi documentation, "vcgencmd").
THROTTLE_BITS = {
    "under_voltage": 0, "freq_capped": 1, "throttled": 2, "soft_temp_limit": 3,
    "under_voltage_occurred": 16, "freq_capped_occurred": 17, "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}
# The thermal zone that is the CPU, by its `type`, best first: Raspberry Pi, then PCs.
CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "k10temp", "soc_thermal", "acpitz")


def decode_throttled(word: int) -> dict[str, bool]:
    return {name: bool(word >> bit & 1) for name, bit in THROTTLE_BITS.items()}


class HealthProbes(ABC):
    """A subclass must provide the five readings; each returns None when it cannot tell."""

    @abstractmethod
    def cpu_temp_c(self) -> float | None: ...

    @abstractmethod
    def throttling(self) -> dict[str, bool] | None:
        """THROTTLE_BITS' names to flags (now and since boot)."""

    @abstractmethod
    def mem_free_mb(self) -> float | None:
        """Memory available to new programs (MemAvailable), MiB."""

    @abstractmethod
    def disk_free_mb(self, path) -> float | None:
        """Free space for loaxa on the filesystem holding `path`, MiB."""

    @abstractmethod
    def uptime_s(self) -> float | None:
        """Seconds since the machine booted."""

    def snapshot(self, path) -> dict:
        """The readings as SPEC's health fields, plus `throttling`."""
        return {"uptime_s": _round(self.uptime_s(), 0), "cpu_temp_c": _round(self.cpu_temp_c(), 1),
                "mem_free_mb": _round(self.mem_free_mb(), 0),
                "disk_free_mb": _round(self.disk_free_mb(path), 0), "throttling": self.throttling()}

    def faults(self) -> list[str]:
        """Power and heat problems now, as names for the health message's `faults`."""
        flags = self.throttling() or {}
        return [f"power.{name}" for name in ("under_voltage", "throttled") if flags.get(name)]


class PiProbes(HealthProbes):
    def __init__(self, root="/", vcgencmd: str = "vcgencmd"):
        self.root = Path(root)
        self.vcgencmd = vcgencmd

    def cpu_temp_c(self) -> float | None:
        """The zone whose type names the CPU (a Pi's first), else the first readable zone."""
        thermal = self.root / "sys/class/thermal"
        zones = sorted(thermal.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
        readings = [(_read(zone / "type") or "", _millis(_read(zone / "temp"))) for zone in zones]
        readings = [(kind, temp) for kind, temp in readings if temp is not None]
        for wanted in CPU_ZONE_TYPES:
            for kind, temp in readings:
                if kind == wanted:
                    return temp
        return readings[0][1] if readings else None

    def throttling(self) -> dict[str, bool] | None:
        word = self._vcgencmd_word()
        if word is None:
            word = self._sysfs_word()
        if word is None:
            return self._hwmon_flags()
        return decode_throttled(word)

    def mem_free_mb(self) -> float | None:
        text = _read(self.root / "proc/meminfo")
        for line in (text or "").splitlines():
            if line.startswith("MemAvailable:"):
                try:
                    return int(line.split()[1]) / 1024  # the kernel writes kB
                except (IndexError, ValueError):
                    return None
        return None

    def disk_free_mb(self, path) -> float | None:
        return _disk_free_mb(path)

    def uptime_s(self) -> float | None:
        text = _read(self.root / "proc/uptime")
        try:
            return float(text.split()[0])
        except (AttributeError, IndexError, ValueError):
            return None

    def _vcgencmd_word(self) -> int | None:
        try:
            done = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True, text=True,
                                  timeout=3)
        except (OSError, subprocess.SubprocessError):
            return None
        out = done.stdout.strip()
        if done.returncode != 0 or not out.startswith("throttled="):
            return None
        return _hex(out.split("=", 1)[1])

    def _sysfs_word(self) -> int | None:
        for path in sorted(self.root.glob("sys/devices/platform/**/get_throttled")):
            word = _hex(_read(path) or "")
            if word is not None:
                return word
        return None

    def _hwmon_flags(self) -> dict[str, bool] | None:
        """The rpi_volt hwmon driver knows only "under-voltage now"."""
        for hwmon in sorted(self.root.glob("sys/class/hwmon/hwmon*")):
            if _read(hwmon / "name") == "rpi_volt":
                alarm = _read(hwmon / "in0_lcrit_alarm")
                if alarm is not None:
                    flags = decode_throttled(0)
                    flags["under_voltage"] = alarm == "1"
                    return flags
        return None


class MockProbes(HealthProbes):
    """Plausible readings of a healthy Pi 4 in a warm cabinet; `set()` changes them.

    Uptime is the mock unit's own: seconds since these probes were made (the mock
    factory's start, its "boot"), on `clock`'s monotonic time, unless set. A fixed
    figure (it was three days) told an operator watching a demo or a simulated fleet
    that units had run for days they never ran, and never moved.
    """

    def __init__(self, timeline=None, *, clock=None, **values):
        self.timeline = timeline
        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._booted = self._monotonic()
        self.values = {"cpu_temp_c": 47.2, "mem_free_mb": 1480.0, "uptime_s": None,
                       "disk_free_mb": None, "throttled_word": 0}
        self.set(**values)

    def set(self, *, under_voltage: bool | None = None, throttled: bool | None = None, **values) -> None:
        """Change readings: cpu_temp_c, mem_free_mb, uptime_s (None: since the mock unit
        started), disk_free_mb (None: the real free space), throttled_word, or the flags
        under_voltage / throttled."""
        unknown = set(values) - set(self.values)
        if unknown:
            raise TypeError(f"unknown probe values: {', '.join(sorted(unknown))}")
        self.values.update(values)
        word = self.values["throttled_word"]
        for flag, bits in ((under_voltage, (0, 16)), (throttled, (2, 18))):
            if flag is not None:
                word = (word | (1 << bits[0]) | (1 << bits[1])) if flag else word & ~(1 << bits[0])
        self.values["throttled_word"] = word
        if self.timeline is not None:
            self.timeline.record("probes", **{k: v for k, v in self.values.items() if v is not None})

    def cpu_temp_c(self):
        return self.values["cpu_temp_c"]

    def throttling(self):
        return decode_throttled(self.values["throttled_word"])

    def mem_free_mb(self):
        return self.values["mem_free_mb"]

    def disk_free_mb(self, path):
        given = self.values["disk_free_mb"]
        return given if given is not None else _disk_free_mb(path)

    def uptime_s(self):
        given = self.values["uptime_s"]
        return given if given is not None else self._monotonic() - self._booted


def _disk_free_mb(path) -> float | None:
    """Free space of the nearest existing folder up from `path` (state_dir may not exist yet)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free / (1024 * 1024)
    except OSError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _millis(text: str | None) -> float | None:
    try:
        return int(text) / 1000
    except (TypeError, ValueError):
        return None


def _hex(text: str) -> int | None:
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def _round(value, digits):
    return None if value is None else round(value, digits)
