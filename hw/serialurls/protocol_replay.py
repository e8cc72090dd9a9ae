"""`replay://PATH?interval=1.0&loop=1`: a recorded stream played back as a read-only serial port.

For attaching a recorded GPS drive (an NMEA log, as `cat /dev/ttyUSB1 > drive.nmea`
captures it) to a unit: `[gps] port = "replay:///home/tech/drive.nmea"`. The file is cut
into epochs, one per distinct UTC time in the sentences' time field (a receiver sends
GGA, RMC, GSA... for one instant together), and one epoch is released every
`interval` seconds, like the receiver's once-a-second burst. Lines without a time
field ride with the epoch they are in. At the end it starts again unless `loop=0`.
Bytes written are discarded (a receiver's configuration commands go nowhere).
A relative PATH (`replay://drive.nmea`) is relative to the current folder.
"""

import threading
import time
import urllib.parse
from pathlib import Path

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

_TIMED = {"GGA": 1, "RMC": 1, "GLL": 5, "ZDA": 1, "GNS": 1, "GBS": 1, "GST": 1}  # type: field


class Serial(SerialBase):
    """A serial port whose input is a recorded file, released epoch by epoch."""

    def __init__(self, *args, **kwargs):
        self._epochs = []
        self._pending = bytearray()
        self._next_epoch = 0
        self._started = 0.0
        self._interval = 1.0
        self._loop = True
        self._wake = threading.Event()
        super().__init__(*args, **kwargs)

    def open(self):
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        path = self._from_url(self.port)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SerialException(f"cannot read {path}: {exc.strerror or exc}") from exc
        self._epochs = split_epochs(data)
        self._pending.clear()
        self._next_epoch, self._started = 0, time.monotonic()
        self.is_open = True

    def _from_url(self, url: str) -> Path:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "replay":
            raise SerialException(f"expected replay://PATH, got {url!r}")
        options = urllib.parse.parse_qs(parts.query)
        try:
            self._interval = float(options.get("interval", ["1.0"])[0])
            self._loop = options.get("loop", ["1"])[0] not in ("0", "no", "false")
        except ValueError as exc:
            raise SerialException(f"replay URL {url!r}: {exc}") from exc
        unknown = set(options) - {"interval", "loop"}
        if unknown or not self._interval >= 0:
            raise SerialException(f"replay URL {url!r}: options are interval (seconds >= 0) and loop")
        return Path(urllib.parse.unquote(parts.netloc + parts.path))

    def close(self):
        self.is_open = False
        self._wake.set()
        super().close()

    def _reconfigure_port(self):
        """Speed and framing mean nothing to a file."""

    @property
    def in_waiting(self):
        if not self.is_open:
            raise PortNotOpenError()
        self._release_due()
        return len(self._pending)

    def read(self, size=1):
        if not self.is_open:
            raise PortNotOpenError()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            self._release_due()
            if self._pending or size == 0:
                data = bytes(self._pending[:size])
                del self._pending[:size]
                return data
            wait = self._until_next()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return b""
            self._wake.wait(max(wait, 0.0))
            if not self.is_open:
                raise PortNotOpenError()

    def write(self, data):
        if not self.is_open:
            raise PortNotOpenError()
        return len(data)

    def reset_input_buffer(self):
        self._pending.clear()

    def reset_output_buffer(self):
        pass

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._epochs and self._due(self._next_epoch) <= now:
            index = self._next_epoch % len(self._epochs)
            if not self._loop and self._next_epoch >= len(self._epochs):
                return
            self._pending += self._epochs[index]
            self._next_epoch += 1

    def _due(self, n: int) -> float:
        return self._started + n * self._interval

    def _until_next(self) -> float:
        if not self._epochs or (not self._loop and self._next_epoch >= len(self._epochs)):
            return 3600.0
        return max(0.0, self._due(self._next_epoch) - time.monotonic())


def split_epochs(data: bytes) -> list[bytes]:
    """The recording cut where the UTC time in a timed sentence changes; line ends kept."""
    epochs, current, current_time = [], bytearray(), None
    for line in data.splitlines(keepends=True):
        stamp = _time_field(line)
        if stamp is not None and current_time is not None and stamp != current_time and current:
            epochs.append(bytes(current))
            current = bytearray()
        if stamp is not None:
            current_time = stamp
        current += line if line.endswith(b"\n") else line + b"\r\n"
    if current:
        epochs.append(bytes(current))
    return epochs


def _time_field(line: bytes) -> bytes | None:
    fields = line.strip().split(b"*")[0].split(b",")
    if len(fields) < 2 or len(fields[0]) != 6 or not fields[0].startswith(b"$"):
        return None
    index = _TIMED.get(fields[0][3:].decode("ascii", "replace"))
    if index is None or index >= len(fields) or not fields[index]:
        return None
    return fields[index]
