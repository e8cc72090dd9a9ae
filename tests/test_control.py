"""The local control socket: round trips, errors as answers, stale sockets, no daemon."""

import json
import os
import socket
import stat
import threading
import time

import pytest

from device.control import ControlError, ControlServer, control_path, control_request


def status():
    return {"unit": "dl-lak-bongkrang-01", "queue": 2, "tiếng": "Việt"}


def broken():
    raise RuntimeError("amplifier link\nlost")


@pytest.fixture
def server(tmp_path):
    srv = ControlServer(control_path(tmp_path), {"status": status, "broken": broken,
                                                  "not-a-dict": lambda: [1, 2],
                                                  "not-json": lambda: {"x": object()}}).start()
    yield srv
    srv.close()


def raw_exchange(path, data: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [json.loads(line) for line in received.splitlines()]


def test_round_trip(server, tmp_path):
    assert control_request(tmp_path, "status") == status()
    assert stat.S_ISSOCK(os.stat(tmp_path / "control.sock").st_mode)
    assert stat.S_IMODE(os.stat(tmp_path / "control.sock").st_mode) == 0o660
    assert [p.name for p in tmp_path.iterdir()] == ["control.sock"]  # no staging folder left behind


def test_errors_are_answers_and_the_server_lives_on(server, tmp_path):
    answer = control_request(tmp_path, "broken")
    assert answer == {"ok": False, "error": "broken failed: RuntimeError: amplifier link lost"}
    assert control_request(tmp_path, "not-a-dict")["error"].startswith("not-a-dict failed: TypeError")
    assert control_request(tmp_path, "not-json")["error"].startswith("not-json failed: TypeError")
    assert control_request(tmp_path, "reboot") == {
        "ok": False, "error": "unknown op 'reboot' (known: broken, not-a-dict, not-json, status)"}
    assert control_request(tmp_path, "status") == status()


def test_several_requests_on_one_connection_and_bad_lines(server):
    answers = raw_exchange(server.path, b'{"op": "status"}\n\n{"op": "status"}\nnot json\n[1]\n{"op": 5}\n')
    assert answers[:2] == [status(), status()]
    assert answers[2]["error"].startswith("request is not JSON")
    assert answers[3]["error"].startswith("unknown op None") and answers[4]["error"].startswith("unknown op 5")
    deep = b"[" * 30_000 + b"]" * 30_000  # deeper than Python's recursion limit, shorter than a line's
    assert raw_exchange(server.path, deep + b"\n")[0]["error"].startswith("request is not JSON")


def test_overlong_request(server):
    answers = raw_exchange(server.path, b'{"op": "' + b"x" * 700_000 + b'"}\n{"op": "status"}\n')
    assert answers == [{"ok": False, "error": "request longer than 65536 bytes"}]
    assert control_request(server.path.parent, "status") == status()


def test_slow_handler_does_not_block_others(tmp_path):
    release = threading.Event()
    srv = ControlServer(tmp_path / "control.sock", {"selftest": lambda: release.wait(10) and {"ok": True},
                                                    "status": status}).start()
    try:
        result = {}
        slow = threading.Thread(target=lambda: result.update(control_request(tmp_path, "selftest", timeout=10)))
        slow.start()
        time.sleep(0.1)
        assert control_request(tmp_path, "status", timeout=2) == status()
        release.set()
        slow.join(5)
        assert result == {"ok": True}
    finally:
        release.set()
        srv.close()


def test_no_daemon(tmp_path):
    assert control_request(tmp_path, "status") is None
    assert control_request(tmp_path / "does" / "not" / "exist", "status") is None


def test_stale_socket_means_no_daemon_and_is_replaced(tmp_path):
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, as after kill -9
    assert path.exists()
    assert control_request(tmp_path, "status") is None
    with ControlServer(path, {"status": status}):
        assert control_request(tmp_path, "status") == status()
    assert not path.exists()


def test_a_live_daemon_is_not_taken_over(server, tmp_path):
    with pytest.raises(ControlError, match="another daemon is running"):
        ControlServer(tmp_path / "control.sock", {"status": dict}).start()
    assert control_request(tmp_path, "status") == status()


def test_a_regular_file_is_not_replaced(tmp_path):
    path = tmp_path / "control.sock"
    path.write_text("keep me")
    with pytest.raises(ControlError, match="is not a socket"):
        ControlServer(path, {}).start()
    assert path.read_text() == "keep me"


def test_close_is_safe_twice_and_leaves_a_successor_alone(tmp_path):
    first = ControlServer(tmp_path / "control.sock", {"status": lambda: {"who": "first"}}).start()
    first.close()
    first.close()
    second = ControlServer(tmp_path / "control.sock", {"status": lambda: {"who": "second"}}).start()
    try:
        first.close()
        assert control_request(tmp_path, "status") == {"who": "second"}
    finally:
        second.close()
    ControlServer(tmp_path / "x.sock", {}).close()  # never started


def test_a_silent_daemon_times_out(tmp_path):
    path = tmp_path / "control.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)  # accepts into the backlog, never answers
    try:
        with pytest.raises(ControlError, match="did not answer .* within 0.3 s"):
            control_request(tmp_path, "status", timeout=0.3)
    finally:
        listener.close()


def test_a_daemon_answering_garbage(tmp_path):
    path = tmp_path / "control.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"<html>\n")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with pytest.raises(ControlError, match="not JSON"):
            control_request(tmp_path, "status", timeout=5)
    finally:
        thread.join(5)
        listener.close()


def test_long_state_dir_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(control_path(deep))) > 108
    with ControlServer(control_path(deep), {"status": status}) as srv:
        assert control_request(deep, "status") == status()
        assert stat.S_ISSOCK(os.lstat(srv.path).st_mode)
    assert not control_path(deep).exists()
