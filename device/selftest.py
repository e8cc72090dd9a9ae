"""The unit's self-test: every part checked once, as SPEC's `loaxa selftest --json` shows it.

    run_selftest(cfg) -> {"ok": bool, "checks": [{"name", "ok", "required", "detail"}, ...]}

Checks, in this order (the amplifier stays on from its check through the tone):
- gpio: the mute and zone relays click on and off and read back; the door is read.
- amplifier: mains relay on, warm-up, handshake and status over serial (LXA1), or for
  a relay-only amplifier the fault line; a fault or protect fails it.
- audio: the built-in 1 kHz test tone through the audio output on every zone.
- gps, modem: required when fitted (a port, or the mock's simulator); a GPS needs a
  fix, a modem a registration.
- broker: connects with the config's broker settings (short timeout) and disconnects.
- clock: trusted as `clock.trust` says (auto: NTP, GPS or RTC).
- disk: at least MIN_FREE_MB free for the state folder.
`ok` is true when every required check passed. Details are one line each, in the
technician's language (loaxa.i18n).

When the daemon runs, it owns the GPIO lines and serial ports: it calls
`run_selftest(cfg, unit_hw, amp=amp, broker_check=lambda: (link.connected, detail))`
with its own parts; without a daemon `loaxa selftest` opens them here.
"""

import logging
import threading
import time
from dataclasses import asdict, dataclass
from zoneinfo import ZoneInfo

from loaxa.errors import LoaxaError
from loaxa.i18n import N_, _

log = logging.getLogger("loaxa.selftest")

CHECKS = ("gpio", "amplifier", "audio", "gps", "modem", "broker", "clock", "disk")
MIN_FREE_MB = 200  # a day of bulletins, the outbox and logs, with room to spare
CLICK_S = 0.15  # relay on this long: long enough to hear and see the LED on the relay board
TONE_VOLUME = 50  # -20 dB: audible at the loudspeakers without startling the commune
GPS_WAIT_S = 10.0
BROKER_TIMEOUT_S = 5.0
TRUSTED_SOURCES = ("ntp", "gps", "rtc")


@dataclass
class Check:
    name: str
    ok: bool
    required: bool
    detail: str


def run_selftest(cfg, hardware=None, *, broker_check=True, amp=None, gps_wait_s: float = GPS_WAIT_S,
                 broker_timeout_s: float = BROKER_TIMEOUT_S, click_s: float = CLICK_S) -> dict:
    """Check every part; SPEC's `{"ok", "checks"}`.

    `hardware`: None (open the unit's hardware from the config, and release it
    after), a HardwareFactory (parts are made on it; the caller closes it), or an
    open hw.UnitHardware (the daemon's; left open). `amp`: the daemon's AmpControl
    (else one is made). `broker_check`: True (connect now), False (left out as
    not required), or a callable returning (ok, detail) from a live link.
    """
    from hw import UnitHardware

    own = not isinstance(hardware, UnitHardware)
    try:
        unit_hw = UnitHardware(cfg, hardware) if own else hardware
    except LoaxaError as exc:  # lines or ports held elsewhere, a factory that cannot start
        return _without_hardware(cfg, _one_line(exc), broker_check, broker_timeout_s)
    try:
        return _run(cfg, unit_hw, amp, broker_check, gps_wait_s, broker_timeout_s, click_s)
    finally:
        if own:
            unit_hw.close()  # closes the factory too when it made it (hardware=None)


def _run(cfg, unit_hw, amp, broker_check, gps_wait_s, broker_timeout_s, click_s) -> dict:
    from device.amp import AmpControl

    own_amp = amp is None
    amp = amp or AmpControl.for_unit(unit_hw, cfg)
    gps_fix = _start_waiting_for_fix(unit_hw, gps_wait_s)  # the fix may come during the rest
    try:
        checks = [_guarded("gpio", True, lambda: check_gpio(unit_hw, amp, click_s))]
        amp_check = _guarded("amplifier", True, lambda: check_amplifier(unit_hw, amp))
        checks.append(amp_check)
        checks.append(_guarded("audio", True, lambda: check_audio(cfg, unit_hw, amp, amp_check.ok)))
    finally:
        if amp.powered and not amp.playing:
            amp.power_off()
        if own_amp:
            amp.close()
    checks.append(_guarded("gps", unit_hw.gps is not None, lambda: check_gps(unit_hw, gps_fix)))
    checks.append(_guarded("modem", unit_hw.modem is not None, lambda: check_modem(unit_hw)))
    if broker_check is not False:
        checks.append(_guarded("broker", True, lambda: check_broker(cfg, broker_check, broker_timeout_s)))
    checks.append(_guarded("clock", True, lambda: check_clock(cfg, unit_hw)))
    checks.append(_guarded("disk", True, lambda: check_disk(cfg, unit_hw)))
    return summary(checks)


def _without_hardware(cfg, reason: str, broker_check, broker_timeout_s) -> dict:
    """The hardware could not be opened: say so, and check what needs none."""
    from hw import SystemClock
    from hw.probes import PiProbes

    class Bare:  # what check_clock and check_disk read
        clock, probes = SystemClock(), PiProbes()

    detail = _("cannot open the unit's hardware: {reason}").format(reason=reason)
    unchecked = _("not checked: the hardware could not be opened")
    checks = [Check("gpio", False, True, detail), Check("amplifier", False, True, unchecked),
              Check("audio", False, True, unchecked), Check("gps", False, False, unchecked),
              Check("modem", False, False, unchecked)]
    if broker_check is not False:
        checks.append(_guarded("broker", True, lambda: check_broker(cfg, broker_check, broker_timeout_s)))
    checks.append(_guarded("clock", True, lambda: check_clock(cfg, Bare)))
    checks.append(_guarded("disk", True, lambda: check_disk(cfg, Bare)))
    return summary(checks)


def summary(checks) -> dict:
    """SPEC's document from a list of Check (or of dicts of the same keys)."""
    docs = [asdict(c) if isinstance(c, Check) else dict(c) for c in checks]
    return {"ok": all(c["ok"] for c in docs if c["required"]), "checks": docs}


def _guarded(name: str, required: bool, run) -> Check:
    """Run one check; whatever it raises fails that check only, in one line."""
    try:
        ok, detail = run()
    except LoaxaError as exc:
        ok, detail = False, _one_line(exc)
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        log.exception("self-test %s", name)
        ok, detail = False, f"{type(exc).__name__}: {_one_line(exc)}"
    return Check(name, bool(ok), required, detail)


# ---- the checks: each returns (ok, detail) ----

def check_gpio(unit_hw, amp, click_s: float = CLICK_S) -> tuple[bool, str]:
    if amp.playing:
        return False, _("not checked: audio is playing; try again when it ends")
    if amp.powered:
        amp.power_off()
    relays = [unit_hw.mute, *unit_hw.zones]
    bad = []
    for relay in relays:
        was = relay.is_on
        for state in (not was, was):
            if state:
                relay.on()
            else:
                relay.off()
            if relay.is_on != state:
                bad.append(relay.role)
            time.sleep(click_s)
    unit_hw.mute.on()  # muted again, whatever it was
    names = ", ".join(r.role for r in relays)
    door = _("door open") if unit_hw.door.is_active else _("door closed")
    if bad:
        return False, _("relays not following: {names}").format(names=", ".join(sorted(set(bad))))
    return True, _("relays {names} clicked on and off; {door}").format(names=names, door=door)


def check_amplifier(unit_hw, amp) -> tuple[bool, str]:
    ready_at = amp.power_on()
    unit_hw.clock.sleep(ready_at - unit_hw.clock.monotonic())
    driver = unit_hw.amplifier
    fault_line = unit_hw.fault.is_active
    if not driver.has_link:
        if fault_line:
            return False, _("relay-only amplifier: its fault line is active")
        return True, _("relay-only amplifier (no control link): mains relay on, fault line clear")
    info = driver.hello()
    status = driver.status()
    amp.status = status
    parts = [_("{model} firmware {firmware} on {port}").format(
        model=info.model or "LXA1", firmware=info.firmware or "?", port=driver.link.url)]
    if status.temp_c is not None:
        parts.append(_("{temp:.0f} °C").format(temp=status.temp_c))
    if status.line_impedance_ohm is not None:
        parts.append(_("line {ohm:.1f} Ω").format(ohm=status.line_impedance_ohm))
    if status.protect or status.fault:
        parts.append(_("in protect: {fault}").format(fault=status.fault or _("no cause given")))
        return False, "; ".join(parts)
    if fault_line:
        parts.append(_("fault line active"))
        return False, "; ".join(parts)
    parts.append(_("no fault"))
    return info.protocol == "LXA1", "; ".join(parts)


def check_audio(cfg, unit_hw, amp, amplifier_ok: bool) -> tuple[bool, str]:
    from audio import builtin_wav, play_files

    if not amplifier_ok:
        return False, _("test tone not played: the amplifier check failed")
    tone = builtin_wav("test-tone", _media_dir(cfg))
    speaker = unit_hw.factory.speaker()
    amp.power_on()
    zones = amp.select_zones(None)
    amp.unmute()
    try:
        played = play_files(speaker, "selftest-test-tone", [tone], threading.Event(), volume=TONE_VOLUME)
    finally:
        amp.mute()
    amp.power_off()
    where = (_("the mock speaker ({folder})").format(folder=getattr(speaker, "output_dir", "?"))
             if unit_hw.mock else _("audio device {device}").format(device=cfg.audio.device))
    detail = _("{seconds:.1f} s test tone through {where} on zones {zones}").format(
        seconds=played, where=where, zones=", ".join(map(str, zones)) or "-")
    return played >= 2.5, detail


def check_gps(unit_hw, waiting) -> tuple[bool, str]:
    gps = unit_hw.gps
    if gps is None:
        return True, _("not fitted")
    fix = waiting() if waiting else gps.fix
    if fix is not None:
        return True, _("fix ({quality}, {satellites} satellites) at {lat:.5f}, {lon:.5f}").format(
            quality=fix.fix, satellites=fix.satellites if fix.satellites is not None else "?",
            lat=fix.lat, lon=fix.lon)
    if gps.receiving:
        satellites = gps.health().get("satellites")
        return False, _("receiver answering, no fix yet ({satellites} satellites); move to open "
                        "sky").format(satellites=satellites if satellites is not None else "?")
    return False, _("no NMEA from {port} ({reason})").format(
        port=gps.link.url, reason=gps.link.last_error or _("receiver silent"))


def check_modem(unit_hw) -> tuple[bool, str]:
    modem = unit_hw.modem
    if modem is None:
        return True, _("not fitted")
    status = modem.poll()
    parts = [_("{dbm} dBm").format(dbm=status.signal_dbm) if status.signal_dbm is not None
             else _("no signal")]
    if status.operator:
        parts.append(f"{status.operator} {status.access or ''}".strip())
    parts.append(_(REGISTRATION_TEXT.get(status.registration, status.registration)))
    return status.registered, ", ".join(parts)


REGISTRATION_TEXT = {"home": N_("registered (home network)"), "roaming": N_("registered (roaming)"),
                     "searching": N_("searching for a network"), "denied": N_("registration denied"),
                     "not registered": N_("not registered"), "unknown": N_("registration unknown")}


def check_broker(cfg, broker_check, timeout_s: float) -> tuple[bool, str]:
    if callable(broker_check):
        return broker_check()
    from provisioning import read_password
    from provisioning.brokercheck import OK, REFUSED, probe_broker

    probe = probe_broker(cfg.broker.url, cfg.broker.username, read_password(cfg),
                         cfg.broker.ca_file, timeout=timeout_s)
    if probe.status == OK:
        return True, _("connected to {url}, login accepted").format(url=cfg.broker.url)
    if probe.status == REFUSED:
        return False, _("{url} refused the login: {reason}").format(url=cfg.broker.url, reason=probe.detail)
    return False, _("cannot reach {url}: {reason}").format(url=cfg.broker.url, reason=probe.detail)


CLOCK_TEXT = {"ntp": N_("synchronised by NTP"), "gps": N_("set from GPS"),
              "rtc": N_("set from the battery RTC"),
              "system": N_("system clock, not confirmed by NTP, GPS or RTC"),
              "untrusted": N_("not trusted")}


def check_clock(cfg, unit_hw) -> tuple[bool, str]:
    source = unit_hw.clock.source()
    now = unit_hw.clock.now().astimezone(ZoneInfo(cfg.unit.timezone)).strftime("%Y-%m-%d %H:%M:%S %z")
    said = _(CLOCK_TEXT.get(source, source))
    if cfg.clock.trust == "always":
        return True, _("{now}: {source}; trusted as clock.trust = \"always\"").format(now=now, source=said)
    if source in TRUSTED_SOURCES:
        return True, f"{now}: {said}"
    return False, _("{now}: {source}; bulletins are missed until the clock is trusted").format(
        now=now, source=said)


def check_disk(cfg, unit_hw) -> tuple[bool, str]:
    free = unit_hw.probes.disk_free_mb(cfg.unit.state_dir)
    if free is None:
        return False, _("cannot read the free space of {folder}").format(folder=cfg.unit.state_dir)
    detail = _("{free:.0f} MB free for {folder}").format(free=free, folder=cfg.unit.state_dir)
    if free < MIN_FREE_MB:
        return False, detail + _(" (needs at least {least} MB)").format(least=MIN_FREE_MB)
    return True, detail


# ---- helpers ----

def _start_waiting_for_fix(unit_hw, wait_s: float):
    """Wait for a GPS fix in the background while the other checks run."""
    gps = unit_hw.gps
    if gps is None:
        return None
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("fix", gps.wait_for_fix(wait_s)),
                              name="selftest-gps", daemon=True)
    waiter.start()

    def finish():
        waiter.join(wait_s + 1.0)
        return result.get("fix")
    return finish


def _media_dir(cfg):
    folder = cfg.unit.media_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["CHECKS", "Check", "MIN_FREE_MB", "run_selftest", "summary"]
