"""Operator-side MQTT: publish signed documents and read what a topic retains.

Every broker-facing command takes the same options: `--broker URL`, `--username`,
`--password-file`, `--ca-file`, `--topic-prefix`, or `--config FILE` holding a
`[broker]` table of the same keys (`url`, `username`, `password_file`, `ca_file`,
`topic_prefix`); a flag given on the command line wins over the file. Relative paths
in the file are relative to the file's folder.

Publishing waits for the broker's PUBACK of every message and fails on any reason
code of 0x80 or more: under MQTT 5 mosquitto answers a publish its ACL denies with
PUBACK 0x87 (not authorized) instead of dropping it silently.
"""

import difflib
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from loaxa.brokerurl import BrokerAddress, parse_broker_url
from loaxa.errors import BrokerError, ConfigError

__all__ = ["BROKER_KEYS", "BrokerOptions", "add_broker_arguments", "broker_options", "publish",
           "publish_and_listen", "read_retained"]

BROKER_KEYS = ("url", "username", "password_file", "ca_file", "topic_prefix")
DEFAULT_TOPIC_PREFIX = "loaxa"
KEEPALIVE_S = 30
# After the broker confirms a subscription, how long a retained copy may take to follow.
RETAINED_GRACE_S = 0.5


@dataclass(frozen=True)
class BrokerOptions:
    address: BrokerAddress
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX

    @property
    def url(self) -> str:
        return str(self.address)


# ---- options ----

def add_broker_arguments(parser) -> None:
    group = parser.add_argument_group(
        "broker", "where to publish; flags win over the [broker] table of --config")
    group.add_argument("--broker", metavar="URL", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    group.add_argument("--username", help="broker user name")
    group.add_argument("--password-file", metavar="FILE", help="file holding the broker password")
    group.add_argument("--ca-file", metavar="FILE",
                       help="CA certificate for mqtts:// (default: the system's CAs)")
    group.add_argument("--topic-prefix", metavar="PREFIX",
                       help=f"topic prefix (default {DEFAULT_TOPIC_PREFIX})")
    group.add_argument("--config", metavar="FILE", help="TOML file with a [broker] table of the same keys")


def _config_table(path: Path) -> dict:
    """The [broker] table of a TOML file, relative paths resolved against its folder."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from exc
    table = data.get("broker")
    if not isinstance(table, dict):
        raise ConfigError(["no [broker] table"], str(path))
    errors = [_key_error(key, value) for key, value in table.items()]
    if any(errors):
        raise ConfigError([e for e in errors if e], str(path))
    for key in ("password_file", "ca_file"):
        if key in table:
            table[key] = str(path.parent / Path(table[key]).expanduser())
    return table


def _key_error(key: str, value) -> str | None:
    if key not in BROKER_KEYS:
        close = difflib.get_close_matches(key, BROKER_KEYS, n=1)
        return f"broker.{key}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if not isinstance(value, str):
        return f"broker.{key}: expected a string, got {type(value).__name__}"
    return None


def _read_password(path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([f"password_file {path}: cannot read: {reason}"], "broker") from exc
    return text.splitlines()[0] if text.strip() else ""


def _topic_prefix(prefix: str) -> str:
    if not prefix or any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError([f"topic_prefix {prefix!r}: must be a plain topic level like 'loaxa'"], "broker")
    return prefix


def broker_options(args) -> BrokerOptions:
    """Merge the command line over `--config`'s [broker] table; read the password file."""
    table = _config_table(Path(args.config)) if getattr(args, "config", None) else {}

    def pick(flag: str, key: str):
        value = getattr(args, flag, None)
        return value if value is not None else table.get(key)

    url = pick("broker", "url")
    if not url:
        raise ConfigError(["url: required: give --broker URL, or --config FILE with a [broker] url"], "broker")
    password_file, ca_file = pick("password_file", "password_file"), pick("ca_file", "ca_file")
    return BrokerOptions(
        address=parse_broker_url(url), username=pick("username", "username") or None,
        password=_read_password(password_file) if password_file else None,
        ca_file=Path(ca_file) if ca_file else None,
        topic_prefix=_topic_prefix(pick("topic_prefix", "topic_prefix") or DEFAULT_TOPIC_PREFIX))


# ---- one short MQTT session ----

def _reason_text(code) -> str:
    value = getattr(code, "value", code)
    return f"{code} (0x{value:02x})" if isinstance(value, int) else str(code)


class _Session:
    """Connect, do a few things, wait for the broker's answers, disconnect."""

    def __init__(self, options: BrokerOptions, timeout: float):
        self.options = options
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._cond = threading.Condition()
        self.connack = None
        self.lost = None
        self.pubacks: dict[int, object] = {}
        self.subacks: dict[int, list] = {}
        self.messages: list = []
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loaxa-op-{uuid.uuid4().hex[:12]}",
                             protocol=mqtt.MQTTv5)
        client.connect_timeout = self.timeout
        if self.options.username:
            client.username_pw_set(self.options.username, self.options.password)
        if self.options.address.tls:
            self._set_tls(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _set_tls(self, client) -> None:
        ca = self.options.ca_file
        try:
            client.tls_set(ca_certs=str(ca) if ca else None)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"CA file {ca}: cannot use it: {getattr(exc, 'strerror', None) or exc}") from exc

    # paho calls these from its network thread
    def _notify(self, update) -> None:
        with self._cond:
            update()
            self._cond.notify_all()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._notify(lambda: setattr(self, "connack", reason_code))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._notify(lambda: setattr(self, "lost", reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._notify(lambda: self.pubacks.__setitem__(mid, reason_code))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._notify(lambda: self.subacks.__setitem__(mid, list(reason_codes)))

    def _on_message(self, client, userdata, message):
        self._notify(lambda: self.messages.append((message.topic, bytes(message.payload), message.retain)))

    def wait(self, done, what: str, deadline: float | None = None) -> bool:
        """Wait until done() or the deadline; a lost connection or the session timeout fails."""
        with self._cond:
            while not done():
                if self.lost is not None and self.connack is not None and not self.connack.is_failure:
                    raise BrokerError(f"broker {self.options.url} closed the connection while waiting "
                                      f"for {what}: {_reason_text(self.lost)}")
                left = (deadline or self.deadline) - time.monotonic()
                if left <= 0:
                    if deadline is not None:
                        return False
                    raise BrokerError(f"broker {self.options.url}: no {what} within {self.timeout:g} s")
                self._cond.wait(min(left, 0.1))
        return True

    def __enter__(self) -> "_Session":
        address = self.options.address
        try:
            self.client.connect(address.host, address.port, keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BrokerError(f"cannot reach broker {address}: {reason}") from exc
        self.client.loop_start()
        try:
            self.wait(lambda: self.connack is not None or self.lost is not None, "answer to connect")
            if self.connack is None or self.connack.is_failure:
                raise BrokerError(f"broker {address} refused the connection: "
                                  f"{_reason_text(self.connack or self.lost)}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---- what commands call ----

def _publish_acknowledged(session, options, messages) -> None:
    """Publish each (topic, payload, retain) at QoS 1 and wait for every PUBACK; raise
    BrokerError naming every topic the broker refused (an ACL says 0x87)."""
    sent = []
    for topic, payload, retain in messages:
        info = session.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        sent.append((info.mid, topic))
    session.wait(lambda: all(mid in session.pubacks for mid, _ in sent), "acknowledgement")
    refused = [f"{topic}: {_reason_text(session.pubacks[mid])}" for mid, topic in sent
               if session.pubacks[mid].is_failure]
    if refused:
        raise BrokerError(f"broker {options.url} refused the publish to " + "; ".join(refused))


def publish(options: BrokerOptions, messages, timeout: float = 10.0) -> None:
    """Publish each (topic, payload, retain) at QoS 1 and wait for every PUBACK.

    Raises BrokerError naming every topic the broker refused."""
    with _Session(options, timeout) as session:
        _publish_acknowledged(session, options, messages)


def _subscribe(session: _Session, topic: str, options: SubscribeOptions) -> None:
    result, mid = session.client.subscribe(topic, options=options)
    if result != mqtt.MQTT_ERR_SUCCESS:
        raise BrokerError(f"cannot subscribe to {topic}: {mqtt.error_string(result)}")
    session.wait(lambda: mid in session.subacks, "subscription answer")
    failed = [code for code in session.subacks[mid] if code.is_failure]
    if failed:
        raise BrokerError(f"broker {session.options.url} refused to let us read {topic}: "
                          f"{_reason_text(failed[0])}")


def read_retained(options: BrokerOptions, topic: str, timeout: float = 10.0) -> bytes | None:
    """The message `topic` retains, or None when it retains nothing."""
    with _Session(options, timeout) as session:
        _subscribe(session, topic, SubscribeOptions(qos=1))
        # The broker queues a topic's retained copy right after the first SUBACK; a second
        # SUBSCRIBE (asking for no retained copy again) is answered after it: a barrier.
        _subscribe(session, topic, SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
        found = lambda: next((p for t, p, retained in session.messages if t == topic and retained), None)  # noqa: E731
        session.wait(lambda: found() is not None, "retained message",
                     deadline=min(session.deadline, time.monotonic() + RETAINED_GRACE_S))
        return found()


def publish_and_listen(options: BrokerOptions, messages, listen: str, wait_s: float, *, accept,
                       enough=lambda found: False, timeout: float = 10.0) -> list[tuple[str, bytes]]:
    """Subscribe to `listen`, publish like `publish`, then gather what arrives on `listen`.

    `accept(topic, payload)` picks the messages wanted; gathering stops after `wait_s`
    seconds or as soon as `enough(found)` is true. The subscription is made before the
    publish, so an answer cannot slip past. Returns [(topic, payload)] in arrival order."""
    with _Session(options, timeout) as session:
        _subscribe(session, listen, SubscribeOptions(qos=1))
        _publish_acknowledged(session, options, messages)

        def found():
            return [(t, p) for t, p, retained in session.messages if not retained and accept(t, p)]
        session.wait(lambda: enough(found()), "answer", deadline=time.monotonic() + wait_s)
        return found()
