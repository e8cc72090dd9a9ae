"""The unit's link to the provincial broker (paho-mqtt 2.x, MQTT 5).

The link never blocks the unit: it connects in the background (`connect_async`),
so a broker that is down at boot, or never there (the demo offline), is no
failure. Records (playlogs, events) come from the outbox and leave it only when
the broker acknowledges them with a success reason code.
"""

import logging
import ssl
import threading
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device.outbox import Outbox
from loaxa.brokerurl import parse_broker_url

log = logging.getLogger("loaxa.link")

MessageHandler = Callable[[str, bytes], None]


def guarded(callback):
    """Wrap a paho callback: an exception escaping one kills paho's network thread silently."""

    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the network thread must survive anything
            log.exception("error in MQTT callback %s", callback.__name__)

    wrapper.__name__ = callback.__name__
    return wrapper


class MqttLink:
    """Connects, keeps the retained `state`, subscribes, and drains the outbox."""

    def __init__(self, *, url: str, client_id: str, username: str | None, password: str | None,
                 ca_file, state_topic: str, online_payload: Callable[[], bytes],
                 will_payload: bytes, offline_payload: Callable[[], bytes],
                 subscriptions: list[str], on_message: MessageHandler, outbox: Outbox,
                 on_connection_change: Callable[[bool], None] = lambda up: None):
        self.address = parse_broker_url(url)
        self._client_id = client_id
        self._username = username
        self._password = password
        self._ca_file = ca_file
        self._state_topic = state_topic
        self._online_payload = online_payload
        self._will_payload = will_payload
        self._offline_payload = offline_payload
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._outbox = outbox
        self._on_connection_change = on_connection_change
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self.last_contact = None
        self._said_offline = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv5)
        if self._username:
            client.username_pw_set(self._username, self._password)
        if self.address.tls:
            client.tls_set(ca_certs=str(self._ca_file) if self._ca_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self._state_topic, self._will_payload, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = guarded(self._handle_connect)
        client.on_disconnect = guarded(self._handle_disconnect)
        client.on_connect_fail = guarded(self._handle_connect_fail)
        client.on_message = guarded(self._handle_message)
        client.on_publish = guarded(self._handle_publish)
        self._client = client
        client.connect_async(self.address.host, self.address.port, keepalive=60)
        client.loop_start()

    def _handle_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.address, reason_code)
            return
        log.info("connected to broker %s", self.address)
        self._connected.set()
        self._said_offline = False
        client.publish(self._state_topic, self._online_payload(), qos=1, retain=True)
        if self._subscriptions:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._on_connection_change(True)
        self.flush()

    def _handle_connect_fail(self, client, userdata):
        if not self._said_offline:
            self._said_offline = True
            log.warning("broker %s not reachable: working offline, records are kept until it answers",
                        self.address)

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties):
        was_connected = self._connected.is_set()
        self._connected.clear()
        with self._lock:
            self._inflight.clear()
        if was_connected and not self._stopping:
            log.warning("lost the broker (%s); records wait in the outbox", reason_code)
            self._on_connection_change(False)

    def _handle_message(self, client, userdata, message):
        self._on_message(message.topic, bytes(message.payload))

    def _handle_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if reason_code.is_failure:
            # An ACL refusal (0x87) is no delivery: the record stays for a later try.
            log.error("broker refused record %d: %s", seq, reason_code)
            return
        self._outbox.remove(seq)
        log.info("record %d delivered", seq)

    def send_record(self, seq: int, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish an outbox row now if connected; otherwise it waits for `flush`."""
        if not self.connected or self._client is None:
            return
        with self._lock:
            info = self._client.publish(topic, payload, qos=qos)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                self._inflight[info.mid] = seq

    def flush(self) -> None:
        """Send every outbox row not already in flight, oldest first."""
        with self._lock:
            in_flight = set(self._inflight.values())
        after = 0
        while self.connected:
            batch = self._outbox.pending(after=after)
            if not batch:
                return
            for rec in batch:
                if rec.seq not in in_flight:
                    self.send_record(rec.seq, rec.topic, rec.payload, rec.qos)
            after = batch[-1].seq

    def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Health and the like: worth sending now, not worth keeping."""
        if self.connected and self._client is not None:
            self._client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish `offline`, give in-flight records a moment, disconnect. Safe twice."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        try:
            if self.connected:
                info = client.publish(self._state_topic, self._offline_payload(), qos=1, retain=True)
                info.wait_for_publish(timeout)
            client.disconnect()
        except (RuntimeError, ValueError) as exc:
            log.warning("clean disconnect failed: %s", exc)
        finally:
            client.loop_stop()
            self._connected.clear()
