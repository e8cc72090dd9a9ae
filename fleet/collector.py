"""`loaxa fleet collect`: take what units report off the broker and into the fleet database.

Nothing is lost between the broker and the database:
- a persistent session (a stable client id, `clean_start` off, a session expiry
  interval): while the collector is down the broker keeps its subscriptions and
  queues QoS 1 messages for it;
- every QoS 1 message is acknowledged (paho `manual_ack`) only after the transaction
  holding it has committed. A collector killed between commit and acknowledgement
  gets the message again and the database drops the duplicate (playlogs and events
  by `id`, replies by a digest of their bytes, schedules by id and version);
- acknowledgements belong to one connection: after a reconnect the broker sends the
  unacknowledged messages again, so an acknowledgement still pending from the old
  connection is dropped rather than sent (its packet id may by then name another
  message).

Load sharing: playlog, event, reply and health are read through the MQTT 5 shared
subscription `$share/loaxa-collectors/...`, so several collectors (each with its own
client id) split them. Shared subscriptions get no retained messages, so `state` and
the retained schedules have plain subscriptions; every collector sees those, and
writing them twice is harmless. Re-subscribing after a reconnect asks for retained
copies only when the broker had forgotten the session.

Throughput: messages are committed in batches (up to `batch_size`, or whatever came
within `batch_wait_s` of the first); the broker may have `receive_maximum` messages
unacknowledged in flight to us, so it keeps sending while a batch commits. While the
database is unreachable nothing is acknowledged, the broker stops sending at
`receive_maximum`, and the collector retries with a growing pause.
"""

import logging
import queue
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import SQLAlchemyError

from fleet.db import db_error_text, is_disconnect
from loaxa.callbacks import guarded
from fleet.ingest import Batch, Received

__all__ = ["Collector", "CollectorSettings", "default_client_id", "subscriptions"]

log = logging.getLogger("loaxa.fleet.collector")

SHARE_GROUP = "loaxa-collectors"
SHARED_KINDS = ("playlog", "event", "reply", "health", "track")
KEEPALIVE_S = 30
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0




def default_client_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40].strip("-") or "host"
    return f"loaxa-collector-{host}"


@dataclass(frozen=True)
class CollectorSettings:
    client_id: str = field(default_factory=default_client_id)
    share_group: str = SHARE_GROUP
    session_expiry_s: int = 7 * 86400
    receive_maximum: int = 2000
    batch_size: int = 500
    batch_wait_s: float = 0.05
    stats_every_s: float = 60.0


def subscriptions(prefix: str, share_group: str = SHARE_GROUP) -> list[tuple[str, bool]]:
    """(topic filter, shared?) for everything the collector reads."""
    shared = [(f"$share/{share_group}/{prefix}/unit/+/{kind}", True) for kind in SHARED_KINDS]
    plain = [(f"{prefix}/unit/+/state", False), (f"{prefix}/unit/+/schedule", False),
             (f"{prefix}/group/#", False)]
    return shared + plain


@dataclass(frozen=True)
class _Pending:
    message: Received
    mid: int
    qos: int
    generation: int


@dataclass
class Stats:
    received: int = 0
    stored: int = 0
    batches: int = 0
    bad: int = 0
    connects: int = 0


class Collector:
    """One collector: `start()`, then `stop()` (commits and acknowledges what it holds)."""

    def __init__(self, broker, store, settings: CollectorSettings | None = None, *, clock=time.time):
        self.broker = broker  # fleet.broker.BrokerOptions
        self.store = store    # fleet.store.FleetStore
        self.settings = settings or CollectorSettings()
        self.clock = clock
        self.stats = Stats()
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._generation = 0
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._said_unreachable = False
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)
        self.client = self._make_client()

    # ---- MQTT ----
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.settings.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.address.tls:
            ca = self.broker.ca_file
            client.tls_set(ca_certs=str(ca) if ca else None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = guarded(self._on_connect, log)
        client.on_connect_fail = guarded(self._on_connect_fail, log)
        client.on_disconnect = guarded(self._on_disconnect, log)
        client.on_subscribe = guarded(self._on_subscribe, log)
        client.on_message = guarded(self._on_message, log)
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        return props

    def start(self) -> None:
        address = self.broker.address
        self._writer.start()
        self.client.connect_async(address.host, address.port, keepalive=KEEPALIVE_S, clean_start=False,
                                  properties=self._connect_properties())
        self.client.loop_start()
        log.info("collecting from %s as %s", address, self.settings.client_id)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.broker.address, reason_code)
            return
        self._generation += 1
        self._said_unreachable = False
        self.stats.connects += 1
        resumed = flags.session_present
        log.info("connected to %s (%s session)", self.broker.address, "resumed" if resumed else "new")
        retained = SubscribeOptions.RETAIN_SEND_IF_NEW_SUB if resumed else SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
        topics = [(topic, SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
                                           if shared else retained))
                  for topic, shared in subscriptions(self.broker.topic_prefix, self.settings.share_group)]
        client.subscribe(topics)
        self._connected.set()

    def _on_connect_fail(self, client, userdata):
        if not self._said_unreachable:
            self._said_unreachable = True
            log.warning("broker %s not reachable; retrying (nothing is lost: units keep their records)",
                        self.broker.address)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [(topic, code) for (topic, _), code in
                   zip(subscriptions(self.broker.topic_prefix, self.settings.share_group), reason_codes)
                   if code.is_failure]
        for topic, code in refused:
            log.error("broker refused the subscription to %s: %s", topic, code)
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self._subscribed.clear()
        if not self._closing.is_set():
            log.warning("lost the broker (%s); reconnecting, nothing acknowledged is lost", reason_code)

    def _on_message(self, client, userdata, message):
        if self._closing.is_set():
            return  # not acknowledged: the broker sends it again next session
        self.stats.received += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:  # kept, as a bad message, with the bytes it could read
            topic = message._topic.decode("utf-8", "replace")
        received = Received(topic, bytes(message.payload), bool(message.retain), self.clock())
        self._queue.put(_Pending(received, message.mid, message.qos, self._generation))

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    # ---- the writer ----
    def _take(self) -> list[_Pending]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(items) < self.settings.batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return items

    def _write_loop(self) -> None:
        last_stats, last_stored = time.monotonic(), -1
        while not (self._stopped.is_set() and self._queue.empty()):
            items = self._take()
            if items and self._commit(items):
                self._acknowledge(items)
            if time.monotonic() - last_stats >= self.settings.stats_every_s:
                last_stats = time.monotonic()
                if self.stats.stored != last_stored:  # a quiet night logs nothing
                    last_stored = self.stats.stored
                    log.info("stored %d of %d messages received (%d bad) in %d batches",
                             self.stats.stored, self.stats.received, self.stats.bad, self.stats.batches)

    def _batch(self, items) -> Batch:
        batch = Batch(prefix=self.broker.topic_prefix)
        for item in items:
            batch.add(item.message)
        return batch

    def _commit(self, items) -> bool:
        """Write the items; True once committed. Retries while the database is away."""
        pause = RETRY_MIN_S
        while True:
            try:
                bad = self._write(items)
                break
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one failure
                reason = db_error_text(exc) if isinstance(exc, SQLAlchemyError) else repr(exc)
                if self._stopped.is_set():
                    log.error("cannot store at stop (%s); %d messages stay with the broker", reason, len(items))
                    return False
                if is_disconnect(exc):
                    log.warning("database unreachable (%s); retrying in %.1f s", reason, pause)
                else:
                    log.exception("storing a batch failed; retrying in %.1f s", pause)
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
        self.stats.stored += len(items)
        self.stats.bad += bad
        self.stats.batches += 1
        return True

    def _write(self, items) -> int:
        """One transaction for the batch; the number of bad messages. Raises on a lost database."""
        batch = self._batch(items)
        try:
            self.store.write(batch)
            return len(batch.bad)
        except SQLAlchemyError as exc:
            if is_disconnect(exc):
                raise
            return self._write_one_by_one(items, exc)

    def _write_one_by_one(self, items, exc) -> int:
        """A batch the database refused: find the messages at fault and keep them aside as bad."""
        log.warning("database refused a batch (%s); writing its %d messages one by one",
                    db_error_text(exc), len(items))
        bad_count = 0
        for item in items:
            one = self._batch([item])
            try:
                self.store.write(one)
                bad_count += len(one.bad)
            except SQLAlchemyError as one_exc:
                if is_disconnect(one_exc):
                    raise
                bad = Batch(prefix=self.broker.topic_prefix)
                bad.bad.append({"topic": item.message.topic[:2000], "payload": item.message.payload[:65536],
                                "reason": f"database refused it: {db_error_text(one_exc)}"[:500],
                                "received_at": item.message.received_at})
                self.store.write(bad)
                bad_count += 1
        return bad_count

    def _acknowledge(self, items) -> None:
        current = self._generation
        for item in items:
            if item.qos > 0 and item.generation == current:
                self.client.ack(item.mid, item.qos)

    # ---- stopping ----
    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and acknowledge what is held, disconnect. Safe twice."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._stopped.set()
        self._writer.join(timeout)
        self.client.disconnect()  # queued behind the last acknowledgements
        self.client.loop_stop()
        log.info("stopped: stored %d messages (%d bad) in %d batches", self.stats.stored, self.stats.bad,
                 self.stats.batches)
