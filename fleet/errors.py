"""The operator side's error: a LoaxaError, so the CLI prints it as one line."""

from loaxa.errors import LoaxaError

__all__ = ["FleetError"]


class FleetError(LoaxaError):
    """The fleet database or an operator tool cannot go on; the message says why."""
