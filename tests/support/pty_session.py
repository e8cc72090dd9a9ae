"""Drive a program through a real pseudo-terminal, as a technician at a keyboard would."""

import os
import pty
import re
import select
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PtySession:
    """`python -m loaxa ARGS` on a pty; `expect()` waits for text, `send()` types a line."""

    def __init__(self, *args: str, env: dict, cwd: str = ROOT, columns: int = 200):
        self.transcript = ""
        self._seen = 0  # expect() looks only at output after the last match
        pid, fd = pty.fork()
        if pid == 0:  # the child: its controlling terminal is the pty (getpass reads /dev/tty)
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "loaxa", *args], env)
        self.pid, self.fd = pid, fd
        self.status = None

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            raise EOFError
        self.transcript += data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match:
        """Wait until `pattern` (a regex) appears in new output; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.transcript, self._seen)
            if match:
                self._seen = match.end()
                return match
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not self._read(left):
                    raise AssertionError(f"{pattern!r} not seen within {timeout}s; transcript:\n{self.transcript}")
            except EOFError:
                raise AssertionError(f"program ended before {pattern!r}; transcript:\n{self.transcript}") from None

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode("utf-8"))

    def answer(self, prompt: str, line: str, timeout: float = 20.0) -> None:
        self.expect(prompt, timeout)
        self.send(line)

    def wait(self, timeout: float = 30.0) -> int:
        """Read to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._read(0.2)
        except EOFError:
            pass
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        os.close(self.fd)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.status = -1
