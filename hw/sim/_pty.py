"""A device simulator on a pseudo-terminal: the driver opens a real tty and cannot tell.

The simulator holds the master side and a thread that reads it; the driver opens the
slave path (or `link_path`, a stable symlink to it, as udev's /dev/serial/by-id/ gives
real adapters) with `serial_for_url`. `unplug()` makes the device vanish the way a
USB-serial adapter does (the tty goes away, reads and writes fail, the path is gone);
`replug()` brings a new tty back at the same `link_path`.
"""

import logging
import os
import select
import threading
import tty

log = logging.getLogger("loaxa.sim")


class PtySimulator:
    """Subclasses provide `on_line(line: bytes)`; one that says things unasked overrides
    `tick()` and `next_tick_s()` (when it is next due; by default never). Incoming bytes
    are answered at once.

    The thread sleeps in select() until bytes come, the next tick is due, or `wake()`:
    a fleet simulation runs thousands of these, and a simulator that polled would cost
    more CPU than the unit code it serves."""

    name = "device"

    def __init__(self, *, link_path=None):
        self.link_path = str(link_path) if link_path else None
        self._master = self._slave = None
        self._slave_name = None
        self._buffer = bytearray()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.plugged = False
        self._plug()

    @property
    def port(self) -> str:
        """What the driver opens: `link_path` when given, else the tty's own path."""
        return self.link_path or self._slave_name

    def next_tick_s(self) -> float | None:
        """Seconds until `tick()` has something to do; None when only bytes or `wake()` matter."""
        return None

    def wake(self) -> None:
        """Look at `next_tick_s()` again now (something the device watches has changed)."""
        fd = self._wake_fd
        if fd is None:
            return  # closed: nobody is waiting
        try:
            os.eventfd_write(fd, 1)
        except OSError:
            pass

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
            self._thread.start()
        return self

    def unplug(self) -> None:
        """The adapter vanishes: tty closed, path removed."""
        with self._lock:
            if not self.plugged:
                return
            self.plugged = False
            for fd in (self._master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._master = self._slave = None
            if self.link_path:
                _remove(self.link_path)
            self._buffer.clear()
        self.wake()  # the thread must stop waiting on the closed tty
        log.info("simulated %s unplugged", self.name)

    def replug(self) -> None:
        """The adapter is back (a new tty; the same `link_path`)."""
        with self._lock:
            if not self.plugged:
                self._plug()
        self.wake()
        log.info("simulated %s plugged in at %s", self.name, self.port)

    def send(self, data: bytes) -> None:
        """Bytes from the device to the driver; dropped while unplugged."""
        with self._lock:
            if not self.plugged:
                return
            try:
                os.write(self._master, data)
            except OSError:
                pass  # nobody reading and the buffer full: a real UART drops too

    def close(self) -> None:
        """Stop the thread and remove the tty; safe twice."""
        self._stop.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self.unplug()
        if self._wake_fd is not None and not (self._thread and self._thread.is_alive()):
            os.close(self._wake_fd)
            self._wake_fd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    # ---- inside ----
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)  # no echo, no line discipline until the driver sets its own
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link_path:
            _remove(self.link_path)
            os.symlink(self._slave_name, self.link_path)
        self.plugged = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._safe(self.tick)
            master = self._master if self.plugged else None
            watched = [self._wake_fd] if master is None else [master, self._wake_fd]
            try:
                ready, _, _ = select.select(watched, [], [], self.next_tick_s())
                if self._wake_fd in ready:
                    os.eventfd_read(self._wake_fd)
                data = os.read(master, 4096) if master in ready else b""
            except BlockingIOError:
                data = b""
            except (OSError, ValueError, TypeError):
                data = b""  # unplugged under our feet
                self._stop.wait(0.05)
            if data:
                self._take(data)

    def _take(self, data: bytes) -> None:
        self._buffer += data
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if not ends:
                if len(self._buffer) > 1024:
                    self._buffer.clear()
                return
            end = min(ends)
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if line:
                self._safe(self.on_line, line)

    def _safe(self, function, *args) -> None:
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - a simulator bug shows in the log, not as a hang
            log.exception("simulated %s", self.name)

    def on_line(self, line: bytes) -> None:
        """One line from the driver."""

    def tick(self) -> None:
        """Periodic work (a GPS sends its sentences here)."""


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
