"""Health probes that read Linux itself: uptime, free memory, free disk, CPU temperature.

They work on a Raspberry Pi and on a PC alike. Each returns None when the machine
cannot tell (no thermal zone in a container, say) and never raises. The folders they
read are arguments, so tests can point them at a tree of their own.
"""

import os
from pathlib import Path

__all__ = ["cpu_temp_c", "disk_free_mb", "mem_free_mb", "system_probes", "uptime_s"]

PROC = Path("/proc")
THERMAL = Path("/sys/class/thermal")
# The zone that is the CPU, by its `type`, best first: Raspberry Pi, Intel, AMD, others.
CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "k10temp", "soc_thermal", "acpitz")
MIB = 1024 * 1024


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def uptime_s(proc: Path = PROC) -> int | None:
    """Seconds since the machine booted (not since the daemon started)."""
    text = _read(Path(proc) / "uptime")
    try:
        return int(float(text.split()[0]))
    except (AttributeError, IndexError, ValueError):
        return None


def mem_free_mb(proc: Path = PROC) -> int | None:
    """Memory available to new work (MemAvailable, which counts reclaimable cache), in MiB."""
    text = _read(Path(proc) / "meminfo") or ""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == "MemAvailable":
            try:
                return int(rest.split()[0]) // 1024  # the kernel writes kB
            except (IndexError, ValueError):
                return None
    return None


def disk_free_mb(path) -> int | None:
    """Space an unprivileged writer may still use on the filesystem holding `path`, in MiB."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // MIB


def _zone_temp(zone: Path) -> float | None:
    text = _read(zone / "temp")
    try:
        millidegrees = int(text.strip())
    except (AttributeError, ValueError):
        return None
    return round(millidegrees / 1000.0, 1)


def cpu_temp_c(thermal: Path = THERMAL) -> float | None:
    """The CPU's temperature in °C: the zone whose type names the CPU, else the first zone."""
    zones = sorted(Path(thermal).glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
    readings = [(((_read(z / "type") or "").strip()), _zone_temp(z)) for z in zones]
    readings = [(kind, temp) for kind, temp in readings if temp is not None]
    for wanted in CPU_ZONE_TYPES:
        for kind, temp in readings:
            if kind == wanted:
                return temp
    return readings[0][1] if readings else None


def system_probes(state_dir) -> dict:
    """The probes of this module, keyed by their health field (`disk_free_mb` of `state_dir`)."""
    return {"uptime_s": uptime_s, "mem_free_mb": mem_free_mb, "cpu_temp_c": cpu_temp_c,
            "disk_free_mb": lambda: disk_free_mb(state_dir)}
