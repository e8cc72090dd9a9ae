"""The unit's link to the provincial broker (paho-mqtt 2.x, MQTT 5).

The link never blocks the unit: it connects in the background (`connect_async`),
so a broker that is down at boot, or never there (the demo offline), is no
failure. Records (playlogs, events) come from the outbox and leave it only when
the broker acknowledges them with a success reason code.

Records go out in a window: at most `window` of them await their PUBACK at once, and
the window is refilled, oldest first, from pages read from the outbox as acknowledgements
arrive. A backlog of any size costs the same memory, and paho's 65,535 message ids are
never exhausted (handing paho the whole backlog at connect cost +105 MB at 50,000
records and stalled past 65,535).
"""

import logging
import random
import ssl
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device.outbox import Outbox
from loaxa.brokerurl import parse_broker_url
from loaxa.callbacks import guarded

log = logging.getLogger("loaxa.link")

ACK_BATCH = 200
WINDOW = 200  # records awaiting PUBACK at once: enough to keep a 4G link busy
PAHO_EXTRA = 20  # paho's own in-flight limit leaves room for `state` and health beside the window

MessageHandler = Callable[[str, bytes], None]


class Backoff:
    """Exponential backoff with full jitter: a delay drawn from [min, min(max, min * 2^n)]."""

    def __init__(self, min_delay_s: float, max_delay_s: float, rng: random.Random | None = None):
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.max_delay_s, self.min_delay_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng.uniform(self.min_delay_s, max(self.min_delay_s, ceiling))

    def reset(self) -> None:
        self.attempt = 0


class MqttLink:
    """Connects, keeps the retained `state`, subscribes, and drains the outbox."""

    def __init__(self, *, url: str, client_id: str, username: str | None, password: str | None,
                 ca_file, state_topic: str, online_payload: Callable[[], bytes],
                 will_payload: bytes, offline_payload: Callable[[], bytes],
                 subscriptions: list[str], on_message: MessageHandler, outbox: Outbox,
                 on_connection_change: Callable[[bool], None] = lambda up: None,
                 keepalive_s: int = 60, min_delay_s: float = 1.0, max_delay_s: float = 120.0,
                 window: int = WINDOW):
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
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq, at most `window`
        self._lock = threading.Lock()  # never held while calling paho (its callbacks take it)
        self._send_lock = threading.Lock()  # one refill at a time: records leave in seq order
        self.window = window
        self._cursor = 0  # the highest outbox seq handed to paho since the last rescan
        self._rescan = True  # from the oldest row again (after a connect, or the outbox renumbered)
        self._more = True  # the last refill filled the window: the outbox may hold more
        self._epoch = None  # the outbox's epoch the cursor belongs to
        self._publishing = False
        self._early_acks: dict = {}  # mid -> reason code for a PUBACK handled before publish() returned
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self.last_contact = None
        self._said_offline = False
        self._stopping = False  # set once stop() has sent `offline`: no more reconnects
        self._socket_open = False
        self._wake = threading.Event()  # set to cut a backoff wait short (stop)
        self._thread = None
        self.keepalive_s = keepalive_s
        self.backoff = Backoff(min_delay_s, max_delay_s)
        self.refused = None  # a broker refusal of a record, until a record gets through
        self._acked: list[int] = []  # acknowledged outbox rows not yet deleted

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if self._username:
            client.username_pw_set(self._username, self._password)
        if self.address.tls:
            # CA verification always: the system's CAs unless the config names a CA file.
            client.tls_set(ca_certs=str(self._ca_file) if self._ca_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self._state_topic, self._will_payload, qos=1, retain=True)
        client.max_inflight_messages_set(self.window + PAHO_EXTRA)
        client.max_queued_messages_set(0)
        client.on_connect = guarded(self._handle_connect, log)
        client.on_disconnect = guarded(self._handle_disconnect, log)
        client.on_message = guarded(self._handle_message, log)
        client.on_publish = guarded(self._handle_publish, log)
        self._client = client
        # connect_async only records where to go; the network thread connects, so a
        # broker that is down at boot is no failure.
        client.connect_async(self.address.host, self.address.port, keepalive=self.keepalive_s)
        self._thread = threading.Thread(target=self._network_loop, name="mqtt", daemon=True)
        self._thread.start()

    def _network_loop(self) -> None:
        """paho's own loop reconnects without jitter; thousands of units restarting in
        lockstep after a broker restart would hammer it, so this loop backs off with jitter."""
        client = self._client
        while not (self._stopping and not self._socket_open):
            try:
                if not self._socket_open:
                    if self._stopping:
                        break
                    client.reconnect()
                    self._socket_open = True
                rc = client.loop(timeout=1.0)  # paho wakes its select itself on publish
                self._outbox.maintain()
                self._delete_acked()
                if self._more or self._rescan or self._epoch != self._outbox.epoch:
                    self._refill(min_room=max(1, self.window // 4))  # idle: no query a second
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._connect_failed(exc)
                continue
            except Exception:  # noqa: BLE001 - the network thread must never die
                log.exception("MQTT network loop error")
                rc = mqtt.MQTT_ERR_UNKNOWN
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._socket_open = False
                if not self._stopping:
                    self._wake.wait(self.backoff.next_delay())

    def _connect_failed(self, exc) -> None:
        self._socket_open = False
        if not self._said_offline:
            self._said_offline = True
            log.warning("broker %s not reachable (%s): working offline, records are kept until it answers",
                        self.address, exc)
        self._wake.wait(self.backoff.next_delay())

    def _handle_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.address, reason_code)
            return
        log.info("connected to broker %s", self.address)
        self._connected.set()
        self._said_offline = False
        self.backoff.reset()
        self.last_contact = time.time()
        client.publish(self._state_topic, self._online_payload(), qos=1, retain=True)
        if self._subscriptions:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        with self._lock:
            self._rescan = True  # records refused before get another try; the network loop refills
        self._on_connection_change(True)

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties):
        was_connected = self._connected.is_set()
        self._connected.clear()
        # `_inflight` stays: paho keeps those messages and sends them again, under the same
        # message ids, once it reconnects; their PUBACKs then settle them as usual.
        if was_connected and not self._stopping:
            log.warning("lost the broker (%s); records wait in the outbox", reason_code)
            self._on_connection_change(False)

    def _handle_message(self, client, userdata, message):
        self.last_contact = time.time()
        self._on_message(message.topic, bytes(message.payload))

    def _handle_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                if self._publishing:  # maybe ours, acknowledged before publish() returned its mid
                    self._early_acks[mid] = reason_code
                return
        self._settle(seq, reason_code)

    def _settle(self, seq: int, reason_code) -> None:
        self.last_contact = time.time()
        if reason_code.is_failure:
            # An ACL refusal (0x87) is no delivery: the record stays for a later try,
            # and the unit reports the fault (its ACL or its config is wrong).
            log.error("broker refused record %d: %s", seq, reason_code)
            self.refused = f"broker refused a record: {reason_code}"
            return
        self.refused = None
        with self._lock:
            self._acked.append(seq)
            batch_full = len(self._acked) >= ACK_BATCH
        if batch_full:
            self._delete_acked()

    def _delete_acked(self) -> None:
        """Delete acknowledged rows in one transaction: one fsync per batch, not per record.
        A crash before the delete only means a resend, which the collector drops by `id`."""
        with self._lock:
            acked, self._acked = self._acked, []
        if acked:
            self._outbox.remove_many(acked)
            log.info("%d record(s) delivered", len(acked))

    def send_record(self, seq: int, topic: str, payload: bytes, qos: int = 1) -> None:
        """A new outbox row: sent now if connected and the window has room, else when the
        window is refilled (every record leaves through the window, in seq order)."""
        self._refill(min_room=1)

    def flush(self) -> None:
        """Send outbox rows from the oldest on, skipping those in flight, up to the window."""
        self._delete_acked()
        with self._lock:
            self._rescan = True
        self._refill(min_room=1)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _refill(self, min_room: int) -> None:
        """Fill the window from the outbox, one page per query, oldest first."""
        client = self._client
        if client is None or not self.connected:
            return
        with self._send_lock:
            with self._lock:
                if self._rescan or self._epoch != self._outbox.epoch:
                    self._rescan, self._epoch, self._cursor = False, self._outbox.epoch, 0
                room = self.window - len(self._inflight)
                if room < min_room:
                    # A record added while the window is full leaves when acknowledgements
                    # make room: the network loop refills only while this says there is more.
                    self._more = True
                    return
                # What paho still carries (it sends it again itself after a reconnect), or was
                # acknowledged and not yet deleted: at most a window and a batch of seqs.
                skip = set(self._inflight.values()) | set(self._acked)
                cursor = self._cursor
                self._publishing = True
            try:
                self._more = True
                while room > 0 and self.connected:
                    batch = self._outbox.pending(after=cursor, limit=room)
                    if not batch:
                        self._more = False
                        break
                    for rec in batch:
                        cursor = rec.seq
                        if rec.seq not in skip and self._publish_record(client, rec):
                            room -= 1
                    with self._lock:
                        self._cursor = cursor
            finally:
                with self._lock:
                    self._publishing = False
                    self._early_acks.clear()

    def _publish_record(self, client, rec) -> bool:
        try:
            info = client.publish(rec.topic, rec.payload, qos=rec.qos)
        except ValueError as exc:  # a topic or payload paho refuses: kept, reported in the log
            log.error("record %d cannot be published: %s", rec.seq, exc)
            return False
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("record %d not handed to paho: %s", rec.seq, mqtt.error_string(info.rc))
            return False
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = rec.seq
                return True
        self._settle(rec.seq, early)
        return True

    def resubscribe(self) -> None:
        """Subscribe again: under MQTT 5's default retain handling the broker then sends
        every retained message on those topics anew (the `sync` command)."""
        client = self._client
        if self.connected and client is not None and self._subscriptions:
            client.subscribe([(topic, 1) for topic in self._subscriptions])

    def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Health and the like: worth sending now, not worth keeping."""
        if self.connected and self._client is not None:
            self._client.publish(topic, payload, qos=qos, retain=retain)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (every record acknowledged) or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._delete_acked()
            if self._outbox.depth() == 0:
                return True
            if not self.connected:
                return False
            time.sleep(0.05)
        return self._outbox.depth() == 0

    def stop(self, timeout: float = 3.0) -> None:
        """Flush the outbox, publish `offline`, disconnect. Safe twice."""
        client = self._client
        if client is None:
            return
        self._client = None
        try:
            if self.connected:
                self.drain(timeout)
                info = client.publish(self._state_topic, self._offline_payload(), qos=1, retain=True)
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not publish offline: %s", exc)
        finally:
            self._stopping = True
            self._wake.set()
            client.disconnect()
            if self._thread is not None:
                self._thread.join(timeout)
            self._connected.clear()
