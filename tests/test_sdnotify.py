"""sd_notify against a real datagram socket standing in for systemd."""

import os
import socket
import uuid

import pytest

from device import sdnotify


@pytest.fixture
def systemd(tmp_path):
    """A datagram socket where systemd would listen, and the environment naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, {"NOTIFY_SOCKET": str(path)}
    sock.close()


def received(sock) -> dict:
    data = sock.recv(4096).decode("utf-8")
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_watchdog_status_stopping(systemd):
    sock, env = systemd
    assert sdnotify.ready("playing nothing yet", environ=env)
    assert received(sock) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "playing nothing yet"}
    assert sdnotify.watchdog(environ=env)
    assert received(sock) == {"WATCHDOG": "1"}
    assert sdnotify.status("playing sang\n(dak-lak/2026-w48)", environ=env)
    assert received(sock) == {"STATUS": "playing sang (dak-lak/2026-w48)"}
    assert sdnotify.stopping(environ=env)
    assert received(sock) == {"STOPPING": "1"}
    assert sdnotify.notify(environ=env, status="Tiếng Việt", errno=0)
    assert received(sock) == {"STATUS": "Tiếng Việt", "ERRNO": "0"}


def test_abstract_namespace():
    name = f"loaxa-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.watchdog(environ={"NOTIFY_SOCKET": "@" + name})
        assert received(sock) == {"WATCHDOG": "1"}


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_not_under_systemd_does_nothing(env):
    assert sdnotify.ready(environ=env) is False
    assert sdnotify.watchdog(environ=env) is False


def test_a_vanished_socket_is_not_an_error(tmp_path):
    assert sdnotify.ready(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert sdnotify.notify(environ={"NOTIFY_SOCKET": "@" + str(uuid.uuid4())}, READY=1) is False


def test_bad_field_names_are_a_programming_error(systemd):
    with pytest.raises(ValueError):
        sdnotify.notify(environ=systemd[1], **{"A=B": 1})
    assert sdnotify.notify(environ=systemd[1]) is False  # nothing to say


@pytest.mark.parametrize("env,interval", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval(env, interval):
    assert sdnotify.watchdog_interval(environ=env) == interval
