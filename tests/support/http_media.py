"""An HTTP media server for tests that honours Range and misbehaves on request.

Python's http.server answers every request with the whole file, so it cannot show
that a download resumes. `MediaHttpServer` serves registered bytes by path and:
- answers `Range: bytes=N-` with 206 and a Content-Range (or ignores it, if told);
- drops the connection after a number of bytes, for the first few requests;
- answers with an error status (404, 503...) a number of times;
- streams like an Icecast mount: no length, paced, then drops or stalls;
- trickles: one byte every `trickle_s` seconds (a server that barely answers, which
  no per-read timeout catches).
Every request is recorded (path, Range header) so tests can assert what was asked.
"""

import http.server
import re
import socket
import threading
import time
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Resource:
    data: bytes
    drop_after: int | None = None  # bytes of the body sent before the connection is cut
    drops: int = 0  # how many requests are cut that way (then served whole)
    status: int | None = None  # answer this status instead...
    statuses: int = 0  # ...this many times
    ignore_range: bool = False
    stream: bool = False  # no Content-Length; paced at `rate` bytes/s
    rate: float | None = None
    stall_after: int | None = None  # stream: stop sending (connection kept open) after this many bytes
    stall_s: float = 30.0
    trickle_s: float | None = None  # one byte of the body every this many seconds
    trickle_head: bool = False  # ...and of the status line and headers too
    hits: int = field(default=0)


class MediaHttpServer:
    def __init__(self):
        self.resources: dict[str, Resource] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # A short poll interval: shutdown() waits for it, at every test's teardown.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def add(self, path: str, data: bytes, **behaviour) -> str:
        """Serve `data` at `/path`; returns its URL. Keywords: see `Resource`."""
        self.resources["/" + path.lstrip("/")] = Resource(data, **behaviour)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of each request for `path`, in order (None: no Range)."""
        with self._lock:
            return [r for p, r in self.requests if p == "/" + path.lstrip("/")]

    def record(self, path: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append((path, range_header))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: MediaHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.server_state
        state.record(self.path, self.headers.get("Range"))
        resource = state.resources.get(self.path)
        if resource is None:
            return self._plain(404, "Not Found")
        with state._lock:
            resource.hits += 1
            hit = resource.hits
        if resource.status and hit <= resource.statuses:
            return self._plain(resource.status, "Try Again Later" if resource.status >= 500 else "No")
        if resource.stream:
            return self._stream(resource)
        if resource.trickle_head:
            return self._trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", resource.trickle_s)
        start = self._range_start(resource)
        if start is None:
            return None
        body = resource.data[start:]
        self._headers(resource, start, len(body))
        cut = resource.drop_after is not None and hit <= resource.drops
        if resource.trickle_s:
            return self._trickle(body, resource.trickle_s)
        self._send(body[: resource.drop_after] if cut else body, resource.rate)
        if cut:
            self._cut()

    def _range_start(self, resource: Resource) -> int | None:
        header = self.headers.get("Range")
        match = _RANGE.match(header or "")
        if resource.ignore_range or not match:
            return 0
        start = int(match.group(1))
        if start >= len(resource.data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(resource.data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return start

    def _headers(self, resource: Resource, start: int, length: int) -> None:
        partial = start > 0 or (self.headers.get("Range") and not resource.ignore_range)
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{len(resource.data) - 1}/{len(resource.data)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def _stream(self, resource: Resource) -> None:
        """Like an Icecast mount: audio/mpeg, no length, paced; then cut, or stall."""
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("icy-name", "loaxa test stream")
        self.send_header("Connection", "close")
        self.end_headers()
        data, sent, step = resource.data, 0, 2048
        started = time.monotonic()
        limit = resource.stall_after if resource.stall_after is not None else resource.drop_after
        limit = len(data) if limit is None else min(limit, len(data))
        try:
            while sent < limit:
                chunk = data[sent: min(sent + step, limit)]
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                if resource.rate:
                    time.sleep(max(0.0, started + sent / resource.rate - time.monotonic()))
            if resource.stall_after is not None:
                time.sleep(resource.stall_s)
        except OSError:
            return
        self._cut()

    def _send(self, body: bytes, rate: float | None = None) -> None:
        """Write `body`, paced at `rate` bytes/s when given (a slow link)."""
        step = len(body) if not rate else max(1024, int(rate / 20))
        started = time.monotonic()
        try:
            for sent in range(0, len(body), step or 1):
                self.wfile.write(body[sent:sent + step])
                self.wfile.flush()
                if rate:
                    time.sleep(max(0.0, started + (sent + step) / rate - time.monotonic()))
        except OSError:
            pass

    def _trickle(self, body: bytes, every_s: float) -> None:
        """One byte, then a pause, and so on: until the client gives up (or the end)."""
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(every_s)
        except OSError:
            pass

    def _cut(self) -> None:
        """Close the connection at once, as a dropped 3G link would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _plain(self, status: int, reason: str) -> None:
        body = f"{status} {reason}\n".encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body)
