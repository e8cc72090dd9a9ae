"""Argument types the operator commands share."""

import argparse

from scheduler import parse_target


def target_arg(text: str) -> str:
    """`unit:ID` or `group:PATH`, checked as a unit would check it."""
    try:
        parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def positive_int(text: str) -> int:
    """A whole number from 1 up (a count, a version, seconds)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value
