"""A real mosquitto broker for tests: own process, own free port, own config."""

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str:
    for path in MOSQUITTO_PATHS:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("mosquitto")
    if found:
        return found
    raise RuntimeError("mosquitto not installed: run `make test`, which installs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process. `extra` lines go into its config (password_file, acl_file...)."""

    def __init__(self, folder: Path, extra: str = "", port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra = extra
        self.process = None
        self.log_path = self.folder / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        lines = [f"listener {self.port} {self.host}", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice"]
        if "password_file" not in self.extra:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:
            # mosquitto 2 started as root drops to the `mosquitto` user before reading
            # its password, ACL and certificate files; ours live in a root-owned temp dir.
            lines.append("user root")
        lines.append(self.extra)
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> "Broker":
        conf = self._write_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def collector(self, *topics: str, username=None, password=None) -> "Collector":
        return Collector(self, topics, username, password)


class Collector:
    """Subscribes like `mosquitto_sub` and keeps every message, for assertions."""

    def __init__(self, broker: Broker, topics, username=None, password=None):
        self.messages = []  # (topic, payload bytes, retain)
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("collector could not subscribe")

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, msg.payload, msg.retain))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0):
        """Wait until some message satisfies predicate(topic, payload); return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for topic, payload, _ in self.messages:
                    if predicate(topic, payload):
                        return topic, payload
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(t, p[:200]) for t, p, _ in self.messages]
                    raise AssertionError(f"no matching message within {timeout}s; saw {seen}")
                self._cond.wait(left)

    def payloads(self, topic: str):
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
