"""The one exception root of loaxa and its narrow subclasses.

Every error a user can meet derives from LoaxaError; its message is one plain
line fit for the command line, an `event` detail or a `reply`.
"""


def printable(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate quoted from hostile input becomes `\\udXXX`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class LoaxaError(Exception):
    """Root of every error loaxa raises on purpose.

    Its message goes into events, replies, logs and the terminal, so it is made
    printable here, once, whatever hostile input it quotes.
    """

    def __init__(self, *args):
        super().__init__(*(printable(a) if isinstance(a, str) else a for a in args))


class ConfigError(LoaxaError, ValueError):
    """The configuration cannot be used; `errors` lists every problem found."""

    def __init__(self, errors, source="config"):
        self.errors = list(errors) if not isinstance(errors, str) else [errors]
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.errors))
        self.errors = [printable(e) for e in self.errors]


class Rejected(LoaxaError):
    """A document from an operator was refused; the message says why."""


class DocumentError(Rejected, ValueError):
    """Malformed JSON, unknown fields, wrong types, values out of range."""


class SignatureError(Rejected):
    """Bad or missing signature, malformed envelope, untrusted key."""


class TrustError(Rejected):
    """A trust document was refused: too few root signatures, an old version, expired."""


class TargetError(Rejected):
    """The document does not name this unit, or arrived on a foreign topic."""


class VersionError(Rejected):
    """A different document under an equal or lower version (replay, rollback)."""


class QuietHoursError(Rejected):
    """A non-emergency item would sound inside the unit's quiet hours."""


class KeyFileError(LoaxaError, ValueError):
    """A key file is missing, unreadable or not an Ed25519 key."""


class MediaError(LoaxaError):
    """Media could not be fetched, verified or decoded."""


class HardwareError(LoaxaError):
    """A hardware part failed or is missing."""


class BrokerError(LoaxaError):
    """The MQTT broker could not be reached or refused us."""
