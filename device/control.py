"""The local control socket: how `loaxa status` and `loaxa selftest` reach the daemon.

A Unix stream socket, `control.sock` in `state_dir`, mode 0660 (the daemon's user and
group; the state folder's own mode decides who can reach it at all). The protocol is
newline-delimited JSON: each request line `{"op": "status", "lang": "en"}` gets one
response line (its texts in `lang`, the asker's language, when given),
the handler's dict as it is, or `{"ok": false, "error": "..."}` when the request is
bad or the handler failed. A connection may carry several requests; the server
closes it after CONNECTION_TIMEOUT_S of silence.

Paths longer than a Unix socket address allows (107 bytes) are reached through
`/proc/self/fd/N/`, a handle on the folder, so a deep `state_dir` still works on Linux.

When the state folder refuses the socket file (a read-only or full SD card), the
daemon listens on an abstract socket named after the folder instead
(`fallback_address`), serving `status` only: an abstract socket has no file mode, so
nothing that moves hardware is offered on it. `control_request` tries it when there
is no socket file.
"""

import errno
import hashlib
import json
import logging
import os
import selectors
import socket
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from loaxa.errors import LoaxaError
from loaxa.i18n import current_language, language

__all__ = ["CONTROL_SOCKET", "ControlError", "ControlServer", "control_path", "control_request"]

log = logging.getLogger("loaxa.unit.control")

CONTROL_SOCKET = "control.sock"
MAX_LINE_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
CONNECTION_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 8
SUN_PATH_MAX = 107


class ControlError(LoaxaError):
    """The daemon's control socket exists but gave no usable answer."""


class SocketPathTaken(ControlError):
    """Something that is not a socket sits where the control socket goes (kept as it is)."""


def control_path(state_dir) -> Path:
    return Path(state_dir) / CONTROL_SOCKET


def fallback_address(state_dir) -> str:
    """The abstract socket (Linux) a daemon listens on when `state_dir` refuses the file."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(state_dir))).hexdigest()[:24]
    return f"\0loaxa-control-{digest}"


@contextmanager
def _address(path: Path):
    """A name `bind`/`connect` accept for `path`, however long it is."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _one_line(text) -> str:
    return " ".join(str(text).split())[:300]


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


def _error(message: str) -> dict:
    return {"ok": False, "error": message}


class ControlServer:
    def __init__(self, path, handlers: dict, *, mode: int = 0o660):
        """`handlers` maps each op to a callable() -> dict, called on a connection's thread."""
        self.path = Path(path)
        self._handlers = dict(handlers)
        self._mode = mode
        self._sock = None
        self._inode = None
        self._thread = None
        self._wake_r, self._wake_w = None, None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = False

    # ---- starting: bind privately, then move into place ----
    def start(self) -> "ControlServer":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clear_stale()
        self._sock = self._bind()
        self._sock.listen(MAX_CONNECTIONS)
        self._inode = os.stat(self.path).st_ino
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.info("control socket at %s", self.path)
        return self

    def _clear_stale(self) -> None:
        """Remove a socket left by a daemon that died; refuse to take over a live one."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketPathTaken(f"{self.path} exists and is not a socket; remove it or choose another state_dir")
        if self._answers():
            raise ControlError(f"another daemon is running: it answers on {self.path}")
        os.unlink(self.path)
        log.info("removed a stale control socket left by an earlier daemon")

    def _answers(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            with _address(self.path) as address:
                probe.connect(address)
            return True
        except OSError:  # refused: nobody listens; the file is a leftover
            return False
        finally:
            probe.close()

    def _bind(self) -> socket.socket:
        # Bound inside a private folder, given its mode, then renamed into place: the
        # socket is never reachable under its public name with the wrong permissions.
        private = Path(tempfile.mkdtemp(prefix=".control-", dir=self.path.parent))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            staged = private / "s"
            with _address(staged) as address:
                sock.bind(address)
            os.chmod(staged, self._mode)
            os.rename(staged, self.path)
        except BaseException:
            sock.close()
            raise
        finally:
            _remove_quietly(private / "s")
            os.rmdir(private)
        return sock

    def start_abstract(self, address: str) -> "ControlServer":
        """Listen on an abstract socket instead of the file (see the module doc). A daemon
        already listening there is refused like one on the file."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ControlError(f"another daemon is running on {self.path.parent}") from exc
            raise
        self._sock = sock
        self._sock.listen(MAX_CONNECTIONS)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.warning("control socket on the abstract address %r (the state folder refuses the file)",
                    address[1:])
        return self

    # ---- serving ----
    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._closed:
                        return
                    self._accept()

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EINTR):
                log.warning("control socket accept failed: %s", exc)
                time.sleep(0.1)  # out of file handles: do not spin on a readable socket
            return
        if not self._slots.acquire(blocking=False):
            _send_quietly(conn, _error("busy: too many requests at once; try again"))
            conn.close()
            return
        threading.Thread(target=self._connection, args=(conn,), name="control-conn", daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(CONNECTION_TIMEOUT_S)
            with conn, conn.makefile("rb") as reader:
                while not self._closed:
                    line = reader.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE_BYTES:
                        _send_quietly(conn, _error(f"request longer than {MAX_LINE_BYTES} bytes"))
                        _drain(conn, reader)
                        return
                    if line.strip():
                        conn.sendall(_encode(self.answer(line)))
        except OSError:  # the client left or went silent; nothing to tell anyone
            pass
        except Exception:  # noqa: BLE001 - one bad connection must not end the server
            log.exception("control connection failed")
        finally:
            self._slots.release()

    def answer(self, line: bytes) -> dict:
        """The response to one request line (never raises)."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return _error(f"request is not JSON: {_one_line(exc)}")
        op = request.get("op") if isinstance(request, dict) else None
        handler = self._handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            return _error(f"unknown op {op!r} (known: {', '.join(sorted(self._handlers))})")
        try:
            with language(request.get("lang")):
                result = handler()
            if not isinstance(result, dict):
                raise TypeError(f"handler returned {type(result).__name__}, not a dict")
            json.dumps(result)
        except Exception as exc:  # noqa: BLE001 - a failing handler is an answer, not a crash
            log.exception("control op %s failed", op)
            return _error(f"{op} failed: {type(exc).__name__}: {_one_line(exc)}")
        return result

    # ---- closing ----
    def close(self) -> None:
        """Stop serving and remove the socket file (if it is still ours); safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._wake_w is not None:
            _send_quietly(self._wake_w, {})
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for sock in (self._sock, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._remove_own_file()

    def _remove_own_file(self) -> None:
        try:
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _send_quietly(sock: socket.socket, doc: dict) -> None:
    try:
        sock.sendall(_encode(doc))
    except OSError:
        pass


def _drain(conn: socket.socket, reader) -> None:
    """Read what the client still sends (up to a limit) before closing, so the answer
    already sent is not lost to a connection reset."""
    conn.shutdown(socket.SHUT_WR)
    left = MAX_RESPONSE_BYTES
    while left > 0 and (chunk := reader.read1(65536)):
        left -= len(chunk)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---- the client side (`loaxa status`, `loaxa selftest`) ----

def control_request(state_dir, op: str, timeout: float = 5.0) -> dict | None:
    """Ask the running daemon; None when no daemon is there (no socket, nobody listening).

    Raises ControlError when a daemon is there but cannot be asked (no permission,
    no answer within `timeout`, an answer that is not JSON)."""
    path = control_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            try:  # a daemon on a read-only or full state folder listens here instead
                sock.connect(fallback_address(state_dir))
            except (FileNotFoundError, ConnectionRefusedError):
                return None
        except PermissionError as exc:
            raise ControlError(f"no permission to use {path} (run as the daemon's user, its group, "
                               "or root)") from exc
        return _exchange(sock, path, op)
    except socket.timeout as exc:
        raise ControlError(f"the daemon did not answer on {path} within {timeout:g} s") from exc
    except OSError as exc:
        raise ControlError(f"talking to the daemon on {path} failed: {exc.strerror or exc}") from exc
    finally:
        sock.close()


def _exchange(sock: socket.socket, path: Path, op: str) -> dict:
    sock.sendall(_encode({"op": op, "lang": current_language()}))
    sock.shutdown(socket.SHUT_WR)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            raise ControlError(f"the daemon's answer on {path} is over {MAX_RESPONSE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"the daemon's answer on {path} is not JSON"
                           + (" (it closed the connection)" if not data else "")) from exc
    if not isinstance(doc, dict):
        raise ControlError(f"the daemon's answer on {path} is not a JSON object")
    return doc
