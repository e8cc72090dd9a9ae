"""Polling for conditions that another process or thread brings about."""

import time


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


def wait_for(predicate, timeout=5.0, interval=0.01) -> bool:
    """True as soon as `predicate()` is, False after `timeout` (for `assert wait_for(...)`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
