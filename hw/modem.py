"""The cellular modem: signal strength, registration and operator over AT commands.

Only 3GPP TS 27.007 commands every modem has: `AT+CSQ`, `AT+CREG?`, `AT+CEREG?`
(LTE), `AT+COPS?`. Answers are picked out of whatever else the modem says:
the echo of the command (until `ATE0` takes), and unsolicited result codes (RING,
+CMTI, +CREG, vendor lines like ^SYSSTART) that may arrive between the lines of an
answer. A `+CREG:` line is the answer when its second field is an unquoted number
(`+CREG: 0,1`); an unsolicited one has the status first (`+CREG: 1,"1A2B",...`).
"""

import logging
import threading
import time
from dataclasses import dataclass

from loaxa.errors import HardwareError

from .serialport import DeviceTimeout, SerialLink

log = logging.getLogger("loaxa.modem")

FINAL_OK = "OK"
FINAL_ERRORS = ("ERROR", "+CME ERROR", "+CMS ERROR", "NO CARRIER")
REGISTRATION = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown",
                5: "roaming", 6: "home (SMS only)", 7: "roaming (SMS only)", 8: "emergency only",
                9: "home (CSFB not preferred)", 10: "roaming (CSFB not preferred)"}
REGISTERED = {1, 5, 6, 7, 9, 10}
ACCESS = {0: "2G", 1: "2G", 2: "3G", 3: "2G", 4: "3G", 5: "3G", 6: "3G", 7: "4G", 8: "4G",
          9: "4G", 10: "4G", 11: "5G", 12: "5G", 13: "5G"}
# MCC-MNC of Vietnam's networks, for modems that report the operator as a number.
OPERATORS = {"45201": "MobiFone", "45202": "VinaPhone", "45204": "Viettel",
             "45205": "Vietnamobile", "45207": "Gmobile"}


class ModemError(HardwareError):
    """The modem answered ERROR (or +CME ERROR) to a command."""


@dataclass(frozen=True)
class ModemStatus:
    signal_dbm: int | None  # None: not known or not detectable (CSQ 99)
    registration: str  # REGISTRATION's words
    registered: bool
    operator: str | None
    access: str | None  # "2G", "3G", "4G"...


def csq_to_dbm(rssi: int) -> int | None:
    """27.007: 0 is -113 dBm or less, 31 is -51 dBm or more, 2 dB a step; 99 unknown."""
    if rssi == 99 or not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


class Modem:
    """AT commands on a SerialLink, one at a time (thread-safe)."""

    def __init__(self, link: SerialLink, *, timeout_s: float = 2.0, on_urc=None):
        self.link = link
        self.timeout_s = timeout_s
        self.on_urc = on_urc  # called with each unsolicited line (str)
        self.status: ModemStatus | None = None  # the last poll's answer
        self.urcs_seen = 0
        self._prepared = 0  # link generation ATE0 was sent on
        self._lock = threading.Lock()

    def command(self, command: str, prefix: str | None = None, *,
                timeout_s: float | None = None) -> list[str]:
        """Send `command`; return its information lines (those starting with `prefix`).

        Raises ModemError on ERROR, DeviceTimeout without a final result code, and
        SerialLinkError when the port is gone.
        """
        with self._lock:
            self._prepare()
            return self._exchange(command, prefix, timeout_s or self.timeout_s)

    def poll(self) -> ModemStatus:
        """Ask signal, registration (2G/3G and LTE: the better of the two) and operator.

        A modem that does not answer raises (and forgets its last status).
        """
        try:
            return self._poll()
        except HardwareError:
            self.status = None
            raise

    def _poll(self) -> ModemStatus:
        rssi = _fields(self._one("AT+CSQ", "+CSQ:"))
        signal = csq_to_dbm(_int(rssi[0])) if rssi else None
        stat = max((self._registration(c) for c in ("CREG", "CEREG")),
                   key=lambda s: (s in REGISTERED, s != 4), default=4)
        cops = _fields(self._one("AT+COPS?", "+COPS:"))
        operator = _operator(cops)
        access = ACCESS.get(_int(cops[3])) if len(cops) > 3 else None
        self.status = ModemStatus(signal, REGISTRATION.get(stat, "unknown"), stat in REGISTERED,
                                  operator, access)
        return self.status

    def health(self) -> dict:
        """`{"signal_dbm", "operator"}` of SPEC's health `net`, plus registration."""
        status = self.status
        if status is None:
            return {"signal_dbm": None, "operator": None, "registration": "unknown"}
        return {"signal_dbm": status.signal_dbm, "operator": status.operator,
                "registration": status.registration, "access": status.access}

    def describe(self) -> str:
        status = self.status
        if status is None:
            return f"modem on {self.link.url}: no answer yet"
        signal = f"{status.signal_dbm} dBm" if status.signal_dbm is not None else "no signal"
        who = f", {status.operator}" if status.operator else ""
        access = f" {status.access}" if status.access else ""
        return f"{signal}{who}{access}, {status.registration}"

    def close(self) -> None:
        self.link.close()

    # ---- inside ----
    def _one(self, command: str, prefix: str) -> str | None:
        try:
            lines = self.command(command, prefix)
        except ModemError:
            return None  # a modem without LTE refuses AT+CEREG?: no answer, not a failure
        return lines[-1] if lines else None

    def _registration(self, which: str) -> int:
        line = self._one(f"AT+{which}?", f"+{which}:")
        fields = _fields(line)
        # The answer is <n>,<stat>[,...]; a lone <stat> would be an unsolicited code.
        if len(fields) >= 2 and fields[1].isdigit():
            return int(fields[1])
        return 4

    def _prepare(self) -> None:
        """Echo off once per opening: fewer lines to skip, but echoes are skipped anyway."""
        if self._prepared == self.link.generation and self.link.is_open:
            return
        self.link.open()
        self.link.discard_input()
        self._exchange("ATE0", None, self.timeout_s)
        self._prepared = self.link.generation

    def _exchange(self, command: str, prefix: str | None, timeout_s: float) -> list[str]:
        self.link.write(command.encode("ascii") + b"\r")
        deadline = time.monotonic() + timeout_s
        found = []
        while True:
            raw = self.link.read_line(deadline)
            if raw is None:
                raise DeviceTimeout(f"modem: no answer to {command} within {timeout_s:g} s")
            line = raw.decode("ascii", "replace").strip()
            if line == FINAL_OK:
                return found
            if line.startswith(FINAL_ERRORS):
                raise ModemError(f"modem: {command} -> {line}")
            if line.upper() == command.upper():
                continue  # the echo
            if prefix is not None and line.startswith(prefix) and self._is_answer(prefix, line):
                found.append(line)
            else:
                self._unsolicited(line)

    @staticmethod
    def _is_answer(prefix: str, line: str) -> bool:
        if prefix in ("+CREG:", "+CEREG:"):
            fields = _fields(line)
            return len(fields) >= 2 and fields[1].isdigit()
        return True

    def _unsolicited(self, line: str) -> None:
        self.urcs_seen += 1
        log.debug("modem says: %s", line)
        if self.on_urc is not None:
            try:
                self.on_urc(line)
            except Exception:  # noqa: BLE001
                log.exception("modem URC handler")


def _fields(line: str | None) -> list[str]:
    if not line:
        return []
    return [f.strip() for f in line.split(":", 1)[1].split(",")]


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _operator(cops: list[str]) -> str | None:
    if len(cops) < 3:
        return None  # "+COPS: 0": not registered to any operator
    name = cops[2].strip('"')
    if cops[1] == "2":  # numeric MCC-MNC
        return OPERATORS.get(name, name)
    return name or None
