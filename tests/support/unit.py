"""Run a real unit (`python -m loaxa run --config ...`) as a subprocess, and serve media over HTTP."""

import functools
import hashlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.waiting import wait_until  # noqa: F401 (re-exported)
from scheduler import public_key_b64, write_keypair, load_private_key

ROOT = Path(__file__).resolve().parents[2]


class MediaServer:
    """Plain HTTP file server on a free port, serving one folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def media_entry(self, name: str) -> dict:
        data = (self.folder / name).read_bytes()
        return {"url": self.url(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class OperatorKey:
    def __init__(self, folder: Path, name: str = "dak-lak-2026"):
        self.key_path, self.pub_path = write_keypair(folder, name)
        self.name = name
        _, self.key = load_private_key(self.key_path)
        self.public = public_key_b64(self.key)


def write_unit_config(folder: Path, *, unit_id: str, groups, broker_url: str, trust: dict,
                      warmup_s=1.0, cooldown_s=1.0, quiet_hours="", extra: str = "",
                      reconnect_max_s: float = 120.0, unit_extra: str = "", trust_extra: str = "") -> Path:
    """`extra` is appended after `[amplifier]` (whole sections); `unit_extra` goes into `[unit]`,
    `trust_extra` into `[trust]` (roots, root_threshold, min_version)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = ", ".join(f'"{name}" = "{pub}"' for name, pub in trust.items())
    text = f"""
[unit]
id = "{unit_id}"
groups = {json.dumps(list(groups))}
timezone = "Asia/Ho_Chi_Minh"
state_dir = "{folder / 'state'}"
quiet_hours = "{quiet_hours}"
{unit_extra}

[broker]
url = "{broker_url}"
reconnect_max_s = {reconnect_max_s}

[trust]
keys = {{ {keys} }}
{trust_extra}

[hardware]
mode = "mock"
mock_output_dir = "{folder / 'mock-output'}"

[amplifier]
warmup_s = {warmup_s}
cooldown_s = {cooldown_s}
{extra}
"""
    path = folder / "unit.toml"
    path.write_text(text)
    return path


def loaxa_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "loaxa", *args]


def run_loaxa(*args, timeout=60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(loaxa_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


class UnitProcess:
    """A unit daemon in its own process, its console captured to a file."""

    def __init__(self, config: Path | None, env=None, log_path: Path | None = None):
        args = ["run"] + (["--config", str(config)] if config else [])
        self.log_path = log_path or (config.parent / "unit.log")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(loaxa_cmd(*args), stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=ROOT, env=env)

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_console(self, text: str, timeout=30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"unit exited {self.process.returncode}:\n{self.console()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the console within {timeout}s:\n{self.console()[-3000:]}")

    def stop(self, sig=signal.SIGTERM, timeout=15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def hardware_log(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / "hardware.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
