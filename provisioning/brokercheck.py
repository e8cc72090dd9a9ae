"""Is the broker reachable from here, and does it take this unit's login?

Used while provisioning, when the technician asks: a unit on a new site is often offline,
and a new unit's password is unknown to the broker until its admin adds the line, so
"reachable, login refused" is a normal answer, distinct from "not reachable".
"""

import ssl
import threading
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loaxa.brokerurl import parse_broker_url

OK, REFUSED, UNREACHABLE = "ok", "refused", "unreachable"


@dataclass(frozen=True)
class Probe:
    status: str      # OK, REFUSED or UNREACHABLE
    detail: str      # plain English from the network or the broker


def probe_broker(url: str, username: str | None = None, password: str | None = None,
                 ca_file=None, timeout: float = 5.0) -> Probe:
    """Connect once with MQTT 5, then disconnect; never raises for network trouble."""
    address = parse_broker_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loaxa-probe-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    answered, result = threading.Event(), {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["code"] = reason_code
        answered.set()

    client.on_connect = on_connect
    if username:
        client.username_pw_set(username, password)
    try:
        if address.tls:
            client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
        client.connect(address.host, address.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Probe(UNREACHABLE, str(exc) or type(exc).__name__)
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return Probe(UNREACHABLE, f"no answer within {timeout:g} s")
        code = result["code"]
        return Probe(REFUSED if code.is_failure else OK, str(code))
    finally:
        client.disconnect()
        client.loop_stop()
