"""Hardware factories for tests that run the same checks against the mock and the Pi.

Serial devices work with either factory anywhere (the drivers are the same; the
port is a simulator's pty). GPIO on the Pi factory needs a Raspberry Pi with two
pins joined by a jumper wire: LOAXA_TEST_PINS="OUT,IN" (BCM numbers), as gpiozero's
own tests/test_real_pins.py asks for TEST_PIN and INPUT_PIN.
"""

import os

import pytest

from hw import MockHardware, PiHardware, detect_mode

FACTORIES = ["mock", "pi"]
TEST_PINS_ENV = "LOAXA_TEST_PINS"


def make(kind: str, tmp_path, **mock_options):
    if kind == "mock":
        return MockHardware(tmp_path / "mock-output", speed=50, **mock_options)
    return PiHardware("default")


@pytest.fixture(params=FACTORIES)
def hw(request, tmp_path):
    """Each serial-device test once with each factory (import it into the test module)."""
    with make(request.param, tmp_path) as factory:
        yield factory


def wired_pins(kind: str, hw) -> tuple[int, int]:
    """(output, input) joined by a wire; skips where there is no such pair."""
    if kind == "mock":
        hw.wire(20, 21)
        return 20, 21
    if detect_mode() != "pi":
        pytest.skip("Pi GPIO: not on a Raspberry Pi")
    pins = os.environ.get(TEST_PINS_ENV, "")
    if "," not in pins:
        pytest.skip(f"Pi GPIO: set {TEST_PINS_ENV}=OUT,IN for two BCM pins joined by a wire")
    out_pin, in_pin = (int(p) for p in pins.split(","))
    return out_pin, in_pin
