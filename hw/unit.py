"""All the hardware of one unit, opened from its config: what the daemon and self-test use.

    with UnitHardware(cfg, on_event=records.event) as unit_hw:
        unit_hw.start()                    # modem polling (the GPS reads on its own)
        amp = AmpControl.for_unit(unit_hw, cfg, ...)   # device/amp.py
        unit_hw.on_press("button_stop", playout.stop_current)
        unit_hw.health()                   # SPEC health fields from the hardware

Parts are opened in wiring order (relays first, all off; then the LED, the inputs,
the serial devices) and closed in reverse by the factory.
"""

import logging
import threading

from . import roles
from ._api import HardwareFactory

log = logging.getLogger("loaxa.hw")

MODEM_POLL_S = 30.0
GPS_LOST_AFTER_S = 10.0


class UnitHardware:
    """The parts: `amp_power`, `mute`, `zones` (list), `led`, `fault`, `door`, `button_test`,
    `button_stop`, `amplifier` (driver), `gps` and `modem` (None when absent), `probes`.

    `on_event(kind, detail, **extra)` gets `tamper`, `gps.lost` and `gps.recovered`
    (the daemon's records.event has this signature); it may be set after construction.
    With no `factory`, one is made from the config (`make_factory(cfg)`) and closed
    with this object.
    """

    def __init__(self, cfg, factory: HardwareFactory | None = None, *, on_event=None,
                 modem_poll_s: float = MODEM_POLL_S, gps_lost_after_s: float = GPS_LOST_AFTER_S):
        from . import make_factory

        self.cfg = cfg
        self.on_event = on_event
        self.modem_poll_s = modem_poll_s
        self.factory = factory if factory is not None else make_factory(cfg)
        self._own_factory = factory is None
        self._stop = threading.Event()
        self._poller = None
        try:
            self._open(gps_lost_after_s)
        except BaseException:
            self.close()
            raise

    @property
    def mock(self) -> bool:
        return self.factory.mock

    @property
    def clock(self):
        return self.factory.clock

    def _open(self, gps_lost_after_s: float) -> None:
        f, cfg = self.factory, self.cfg
        plan = {r.role: r for r in roles.pin_roles(cfg.gpio)}
        relay = lambda role: f.relay(role, plan[role].pin, plan[role].active_high)  # noqa: E731
        self.amp_power = relay("amp_power")
        self.mute = relay("mute")
        self.zones = [relay(f"zone{n}") for n in range(1, len(cfg.gpio.zones) + 1)]
        led = plan["status_led"]
        self.led = f.status_led(led.pin, led.active_high)
        for name in roles.INPUTS:
            role = plan[name]
            setattr(self, name, f.input(name, role.pin, role.active_high, roles.BOUNCE_S[name]))
        self.door.when_changed = self._door_changed
        amp = cfg.amplifier
        self.amplifier = f.amplifier(amp.port, baudrate=amp.baudrate,
                                     driver=getattr(amp, "driver", "auto"))
        self.gps = f.gps(cfg.gps.port, lost_after_s=gps_lost_after_s)
        if self.gps is not None:
            self.gps.on_event = self._event
        self.modem = f.modem(cfg.modem.port)
        self.probes = f.probes()
        self._open_vehicle(f, getattr(cfg, "vehicle", None))

    def _open_vehicle(self, f, vehicle) -> None:
        """A loudspeaker vehicle's ignition input and battery ADC (None when not fitted)."""
        self.ignition = self.battery = None
        if vehicle is None:
            return
        if vehicle.ignition is not None:
            self.ignition = f.input("ignition", vehicle.ignition, vehicle.ignition_active_high, 0.2)
            self.ignition.when_changed = lambda on: self._event(
                "vehicle.ignition", "ignition on" if on else "ignition off", ignition=on)
        if vehicle.battery_adc != "none":
            self.battery = f.battery_adc(vehicle.battery_channel, divider=vehicle.battery_divider,
                                         vref=vehicle.battery_vref)

    def ignition_on(self) -> bool | None:
        """The vehicle's ignition: True/False, None when no input is wired."""
        if self.ignition is None:
            return None
        try:
            return self.ignition.is_active
        except Exception:  # noqa: BLE001 - closed during shutdown: unknown
            return None

    def power(self) -> dict | None:
        """Health `power` of a vehicle: `ignition` and `battery_v` (the vehicle battery);
        None on a unit with neither wired."""
        if self.ignition is None and self.battery is None:
            return None
        return {"mains": None, "ignition": self.ignition_on(),
                "battery_v": None if self.battery is None else self.battery.volts()}

    # ---- running ----
    def start(self) -> "UnitHardware":
        """Poll the modem in the background (first poll at once); safe twice."""
        if self.modem is not None and self._poller is None:
            self._poller = threading.Thread(target=self._poll_modem, name="modem-poll", daemon=True)
            self._poller.start()
        return self

    def _poll_modem(self) -> None:
        while not self._stop.is_set():
            try:
                self.modem.poll()
            except Exception as exc:  # noqa: BLE001 - a silent modem is a health fact, not a crash
                log.info("modem: %s", exc)
            self._stop.wait(self.modem_poll_s)

    def on_press(self, button: str, callback) -> None:
        """Call `callback()` each time `button` ("button_test" or "button_stop") is pressed."""
        if button not in ("button_test", "button_stop"):
            raise ValueError(f"no button {button!r}")
        getattr(self, button).when_changed = lambda active: callback() if active else None

    def position(self) -> dict | None:
        """`{"lat", "lon"}` for a playlog, None without GPS or without a fix."""
        return None if self.gps is None else self.gps.position()

    # ---- health ----
    def health(self) -> dict:
        """SPEC health fields the hardware knows: uptime_s, cpu_temp_c, mem_free_mb,
        disk_free_mb (of state_dir), net, gps, and `faults`; plus `throttling` and `door`.
        The daemon adds ts, clock, amp (AmpControl.health()), queue and next."""
        doc = self.probes.snapshot(self.cfg.unit.state_dir)
        doc["net"] = (self.modem.health() if self.modem is not None
                      else {"signal_dbm": None, "operator": None})
        doc["gps"] = (self.gps.health() if self.gps is not None
                      else {"lat": None, "lon": None, "fix": None})
        doc["door"] = "open" if self._door_open() else "closed"
        doc["faults"] = self.faults()
        return doc

    def faults(self) -> list[str]:
        """What is wrong now, as short names (the amplifier's come from AmpControl.faults())."""
        faults = self.probes.faults()
        if self.gps is not None and self.gps.fix is None:
            faults.append("gps.no_fix" if self.gps.receiving else "gps.silent")
        if self.modem is not None:
            status = self.modem.status
            if status is None:
                faults.append("modem.silent")
            elif not status.registered:
                faults.append("modem.not_registered")
        if self._door_open():
            faults.append("tamper.door_open")
        return faults

    def _door_open(self) -> bool:
        try:
            return self.door.is_active
        except Exception:  # noqa: BLE001 - closed during shutdown
            return False

    # ---- events ----
    def _door_changed(self, active: bool) -> None:
        self._event("tamper", "cabinet door opened" if active else "cabinet door closed",
                    door="open" if active else "closed")

    def _event(self, kind: str, detail: str, **extra) -> None:
        log.warning("%s: %s", kind, detail)
        if self.on_event is not None:
            try:
                self.on_event(kind, detail, **extra)
            except Exception:  # noqa: BLE001 - reporting must not break the GPIO thread
                log.exception("event handler for %s", kind)

    # ---- lifetime ----
    def close(self) -> None:
        """Stop polling; the factory (if made here) releases every part, relays off. Safe twice."""
        self._stop.set()
        if self._poller is not None and self._poller.is_alive():
            self._poller.join(3.0)
        if self._own_factory:
            self.factory.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
