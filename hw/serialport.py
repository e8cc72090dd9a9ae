"""A serial link that outlives its adapter: opened with `serial_for_url`, reopened when it vanishes.

Every serial device of a unit (amplifier, GPS, modem) talks through a
`SerialLink`, so each one gets the same behaviour for free:
- any pyserial URL works (`/dev/ttyUSB0`, `socket://host:port`, `loop://`, our
  `replay://` for recorded NMEA), so a simulator on a pty or a recorded stream
  stands in for the device without a code path of its own;
- a USB-serial adapter that vanishes (unplugged, brown-out, a hub reset) turns
  into one `SerialLinkError`, the port is closed, and the next use reopens it
  (at most once per `reopen_s`) as soon as the device node is back;
- input is split into lines (CR, LF or CRLF), and garbage is contained: an
  overlong run of bytes without a line end is dropped and counted.

`generation` counts successful opens, so a driver can tell that the device
may have lost its state and resync it.
"""

import logging
import threading
import time

import serial

from loaxa.errors import HardwareError

READ_SLICE_S = 0.05  # the longest a read holds the port's lock

try:
    from termios import error as _TermiosError  # tcdrain on a vanished tty raises this, not OSError
except ImportError:  # not POSIX
    _TermiosError = OSError

log = logging.getLogger("loaxa.serial")

# pyserial finds URL schemes by module name: hw.serialurls.protocol_replay gives replay://.
if "hw.serialurls" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("hw.serialurls")

# What a port that fails in use raises: pyserial's own, the OS's, and a closed fd's.
_IO_ERRORS = (serial.SerialException, OSError, ValueError, TypeError, _TermiosError)
MAX_LINE = 256  # longer than any NMEA (82), AT or LXA1 line: anything longer is garbage
_LINE_ENDS = (b"\r", b"\n")


class SerialLinkError(HardwareError):
    """The port cannot be opened, or failed while in use (it is closed and will be reopened)."""


class DeviceTimeout(HardwareError, TimeoutError):
    """The device did not answer in time."""


class SerialLink:
    """One serial device at `url`; thread-safe for one reader and any writers.

    `read_line(deadline)` and `write(data)` open the port when needed and raise
    SerialLinkError when it cannot be opened or fails. `close()` is final.
    """

    def __init__(self, url: str, *, baudrate: int = 9600, name: str = "serial",
                 reopen_s: float = 1.0, max_line: int = MAX_LINE, exclusive: bool = True,
                 read_slice_s: float = READ_SLICE_S):
        """`read_slice_s`: the longest one read waits, holding the lock; a port that only
        listens (a GPS) can afford long slices and wake up less."""
        self.url, self.name, self.baudrate = url, name, baudrate
        self.read_slice_s = read_slice_s
        self.reopen_s, self.max_line, self.exclusive = reopen_s, max_line, exclusive
        self.generation = 0  # successful opens so far
        self.garbage_bytes = 0  # bytes dropped as overlong lines
        self.open_attempts = 0
        self.last_error: str | None = None
        self._port = None
        self._buffer = bytearray()
        self._lock = threading.RLock()
        self._last_attempt = None  # monotonic time of the last failed open
        self._closed = False

    # ---- state ----
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port now if it is closed; SerialLinkError when it cannot be (rate-limited)."""
        with self._lock:
            if self._closed:
                raise SerialLinkError(f"{self.name}: link closed")
            if self._port is not None:
                return
            now = time.monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self.reopen_s:
                raise SerialLinkError(f"{self.name}: {self.url} unavailable ({self.last_error})")
            self._open_port(now)

    def _open_port(self, now: float) -> None:
        self.open_attempts += 1
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.read_slice_s,
                                         write_timeout=1.0, exclusive=self.exclusive)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._last_attempt = now
            self.last_error = _one_line(exc)
            raise SerialLinkError(f"{self.name}: cannot open {self.url}: {self.last_error}") from exc
        self._port, self._last_attempt = port, None
        self._buffer.clear()
        self.generation += 1
        if self.generation > 1:
            log.info("%s: %s open again", self.name, self.url)

    def set_baudrate(self, baudrate: int) -> None:
        """Change the speed (autobauding); takes effect at once on an open port."""
        with self._lock:
            self.baudrate = baudrate
            if self._port is not None:
                try:
                    self._port.baudrate = baudrate
                except _IO_ERRORS as exc:
                    self._lost(exc)

    # ---- I/O ----
    def write(self, data: bytes) -> None:
        with self._lock:
            self.open()
            try:
                self._port.write(data)
                self._port.flush()
            except _IO_ERRORS as exc:
                self._lost(exc)

    def read_line(self, deadline: float) -> bytes | None:
        """The next non-empty line (without its end) before monotonic `deadline`, else None.

        A deadline already past still takes whatever has arrived (a poll).
        """
        looked = False
        while True:
            with self._lock:
                line = self._take_line()
                if line is not None:
                    return line
                self.open()
                left = deadline - time.monotonic()
                if left <= 0 and looked:
                    return None
                # One fixed wait (a deadline already past still reads what is there): a port
                # whose timeout never changes is never reprogrammed.
                self._fill(self.read_slice_s)
                looked = True

    def discard_input(self) -> None:
        """Forget what has arrived and not been read (stale replies after a timeout)."""
        with self._lock:
            self._buffer.clear()
            if self._port is not None:
                try:
                    self._port.reset_input_buffer()
                except _IO_ERRORS as exc:
                    self._lost(exc)

    def close(self) -> None:
        """Close for good; safe twice."""
        with self._lock:
            self._closed = True
            self._drop_port()

    # ---- inside ----
    def _fill(self, timeout: float) -> None:
        port = self._port
        try:
            if port.timeout != timeout:  # pyserial reprograms the tty (termios) on every set
                port.timeout = timeout
            data = port.read(1)
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
        except _IO_ERRORS as exc:
            self._lost(exc)
        self._buffer += data

    def _take_line(self) -> bytes | None:
        buffer = self._buffer
        while True:
            ends = [i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0]
            if not ends:
                if len(buffer) > self.max_line:
                    self.garbage_bytes += len(buffer)
                    buffer.clear()
                return None
            end = min(ends)
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            if len(line) > self.max_line:
                self.garbage_bytes += len(line)
                continue
            if line:
                return line

    def _lost(self, exc: Exception):
        self.last_error = _one_line(exc)
        self._last_attempt = time.monotonic()
        self._drop_port()
        log.warning("%s: %s lost: %s", self.name, self.url, self.last_error)
        raise SerialLinkError(f"{self.name}: {self.url} lost: {self.last_error}") from exc

    def _drop_port(self) -> None:
        port, self._port = self._port, None
        self._buffer.clear()
        if port is not None:
            try:
                port.close()
            except _IO_ERRORS:
                pass  # already gone: closing is all we wanted

    def __repr__(self) -> str:
        return f"<SerialLink {self.name} {self.url} {'open' if self.is_open else 'closed'}>"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
