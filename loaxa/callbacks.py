"""Callbacks run on a library's thread (paho's network loop) must not raise."""

import functools
import logging


def guarded(callback, log: logging.Logger | None = None):
    """Wrap `callback` so that an exception is logged, not raised: one escaping a paho
    callback ends paho's network thread silently, and with it the connection."""
    logger = log or logging.getLogger("loaxa")

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the network thread must survive anything
            logger.exception("error in callback %s", getattr(callback, "__name__", callback))

    return wrapper
