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
