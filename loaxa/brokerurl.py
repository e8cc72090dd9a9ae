"""Broker URLs: mqtt://host[:port] and mqtts://host[:port]."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from loaxa.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Split a broker URL; raise ConfigError with a plain reason when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError([f"broker url {url!r}: {exc}"], "broker") from exc
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError([f"broker url {url!r}: scheme must be mqtt:// or mqtts://"], "broker")
    if not parts.hostname:
        raise ConfigError([f"broker url {url!r}: no host"], "broker")
    return BrokerAddress(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")
