import os

import pytest

# Messages default to the technician's language (Vietnamese under a C or unknown locale);
# the tests read the English source text unless a test asks for another language.
os.environ.setdefault("LOAXA_LANG", "en")

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
