"""GPIO roles from the config's [gpio] table: which pin does what, at which active level.

Roles: outputs `amp_power`, `mute`, `zone1`..`zoneN` (from `zones`), `status_led`;
inputs `fault` (the amplifier's protect line), `door` (tamper switch),
`button_test` and `button_stop`. Every line is active-high unless `gpio.active_low`
names it: by role (`"mute"`, `"zone2"`, `"zones"` for all of them) or by BCM pin.
The config check (provisioning/config.py) refuses two roles on one pin and names
in `active_low` that are no role; this module trusts a checked config, and reads
configs without the newer keys with their defaults.
"""

from dataclasses import dataclass

OUTPUTS = ("amp_power", "mute")
INPUTS = ("fault", "door", "button_test", "button_stop")
DEFAULT_PINS = {"door": 16, "button_test": 26, "button_stop": 13}  # as provisioning/config.py
BOUNCE_S = {"fault": None, "door": 0.2, "button_test": 0.05, "button_stop": 0.05}


@dataclass(frozen=True)
class PinRole:
    role: str
    pin: int
    active_high: bool
    direction: str  # "output", "input" or "led"


def pin_roles(gpio) -> list[PinRole]:
    """Every role of the [gpio] table, in wiring order."""
    low = set(getattr(gpio, "active_low", ()) or ())
    zones = tuple(gpio.zones)

    def make(role: str, pin: int, direction: str) -> PinRole:
        is_low = role in low or pin in low or (role.startswith("zone") and "zones" in low)
        return PinRole(role, pin, not is_low, direction)

    roles = [make(name, getattr(gpio, name), "output") for name in OUTPUTS]
    roles += [make(f"zone{n}", pin, "output") for n, pin in enumerate(zones, start=1)]
    roles.append(make("status_led", gpio.status_led, "led"))
    roles += [make(name, getattr(gpio, name, DEFAULT_PINS.get(name)), "input") for name in INPUTS]
    return roles


def role_names(zone_count: int) -> list[str]:
    """Names `gpio.active_low` may use."""
    return [*OUTPUTS, "zones", *(f"zone{n}" for n in range(1, zone_count + 1)), "status_led", *INPUTS]
