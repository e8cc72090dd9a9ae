import atexit
import os
import shutil
import socket
import tempfile

import pytest

# Messages default to the technician's language (Vietnamese under a C or unknown locale);
# the tests read the English source text unless a test asks for another language.
os.environ.setdefault("LOAXA_LANG", "en")


def _refusing_broker_url() -> str:
    """A broker URL nobody answers: a port this process holds bound and never listens on.

    Any demo a test starts (`loaxa run`, `status`, `selftest` with no config) inherits it,
    so the suite never reaches a broker it did not start: by default the demo reports to
    127.0.0.1:1883, which on a developer's machine is their own mosquitto and fleet.
    Held for the whole session, the port cannot be taken by anyone else meanwhile."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    atexit.register(holder.close)
    return f"mqtt://127.0.0.1:{holder.getsockname()[1]}"


# Each xdist worker imports this file: each holds its own port and its own folder.
os.environ["LOAXA_DEMO_BROKER"] = _refusing_broker_url()
# A demo started without XDG_STATE_HOME would share the user's ~/.local/state/loaxa-demo.
_state_home = tempfile.mkdtemp(prefix="loaxa-test-state-")
atexit.register(shutil.rmtree, _state_home, ignore_errors=True)
os.environ["XDG_STATE_HOME"] = _state_home
# A user's demo route would move every mock GPS that tests expect to stay put.
os.environ.pop("LOAXA_DEMO_ROUTE", None)

from tests.support.broker import Broker


@pytest.fixture
def broker(tmp_path):
    """A running anonymous mosquitto on its own free port."""
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path):
    """Start brokers with extra config lines: broker_factory(extra='password_file ...')."""
    started = []

    def start(extra: str = "", name: str = "broker"):
        b = Broker(tmp_path / name, extra).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
