"""Hardware behind a factory: `make_factory` picks the mock or the Pi.

Like gpiozero's pin factory, the choice is an argument with an override from
the environment: `LOAXA_HARDWARE=mock|pi` wins over the argument and the
config, so a unit's config can be exercised on a PC without editing it.
"""

import os
from pathlib import Path

from loaxa.errors import HardwareError

from ._api import LED_PATTERNS, HardwareFactory, InputLine, Relay, StatusLed
from .amplifier import AmpError, AmpInfo, Amplifier, AmpStatus, Lxa1Amplifier, RelayOnlyAmplifier
from .clock import CLOCK_SOURCES, Clock, SystemClock, UnitClock
from .gps import GpsClockSource, GpsFix, GpsReceiver
from .mock import MockHardware, MockInput, MockRelay, MockSpeaker, MockStatusLed, Timeline, safe_label
from .modem import Modem, ModemError, ModemStatus
from .pi import PiHardware
from .probes import HealthProbes, MockProbes, PiProbes
from .roles import PinRole, pin_roles
from .serialport import DeviceTimeout, SerialLink, SerialLinkError
from .unit import UnitHardware

MODES = ("mock", "pi")
ENV_MODE = "LOAXA_HARDWARE"
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def make_factory(mode=None, *, output_dir=None, speed=None, audio_device=None,
                 clock: Clock | None = None) -> HardwareFactory:
    """The hardware factory for `mode` ("mock" or "pi"; None: `detect_mode()`).

    `mode` may also be a loaxa Config: its `hardware.mode`,
    `hardware.mock_output_dir`, `hardware.mock_speed` and `audio.device` then
    fill in whatever keywords are not given. `$LOAXA_HARDWARE` overrides the
    mode either way. The mock needs `output_dir`. Raises HardwareError for an
    unknown mode.
    """
    if _is_config(mode):
        cfg, mode = mode, mode.hardware.mode
        output_dir = output_dir if output_dir is not None else cfg.hardware.mock_output_dir
        speed = speed if speed is not None else getattr(cfg.hardware, "mock_speed", None)
        audio_device = audio_device if audio_device is not None else cfg.audio.device
    mode = _chosen_mode(mode)
    if mode == "pi":
        return PiHardware(audio_device or "default", clock=clock)
    if output_dir is None:
        raise HardwareError("mock hardware needs an output folder (hardware.mock_output_dir)")
    return MockHardware(output_dir, speed=1.0 if speed is None else speed, clock=clock)


def detect_mode() -> str:
    """"pi" on a Raspberry Pi (by its device-tree model), else "mock"."""
    try:
        model = DEVICE_TREE_MODEL.read_bytes().decode("ascii", "replace")
    except OSError:
        return "mock"
    return "pi" if "Raspberry Pi" in model else "mock"


def _chosen_mode(mode) -> str:
    env = os.environ.get(ENV_MODE, "").strip()
    if env:
        return _checked(env, f"${ENV_MODE}")
    return detect_mode() if mode is None else _checked(mode, "hardware.mode")


def _checked(mode: str, source: str) -> str:
    if mode not in MODES:
        raise HardwareError(f"{source} must be 'mock' or 'pi', got {mode!r}")
    return mode


def _is_config(obj) -> bool:
    return hasattr(obj, "hardware") and hasattr(obj, "audio")


__all__ = [
    "CLOCK_SOURCES", "LED_PATTERNS", "AmpError", "AmpInfo", "AmpStatus", "Amplifier", "Clock",
    "DeviceTimeout", "GpsClockSource", "GpsFix", "GpsReceiver", "HardwareFactory", "HealthProbes",
    "InputLine", "Lxa1Amplifier", "MockHardware", "MockInput", "MockProbes", "MockRelay",
    "MockSpeaker", "MockStatusLed", "Modem", "ModemError", "ModemStatus", "PiHardware", "PiProbes",
    "PinRole", "RelayOnlyAmplifier", "Relay", "SerialLink", "SerialLinkError", "StatusLed",
    "SystemClock", "Timeline", "UnitClock", "UnitHardware", "detect_mode", "make_factory",
    "pin_roles", "safe_label",
]
