"""MQTT sink: the feed on an MQTT broker, with retained state and Home Assistant discovery.

Topics (``prefix`` default ``realtime``; a stream name is made topic-safe: ``/ + #`` and spaces
become ``_``):

- ``<prefix>/<stream>/state``: the stream's current state (:mod:`realtime.sinks.state`), JSON,
  **retained**, QoS ``qos``: a subscriber that joins late gets it at once.
- ``<prefix>/<stream>/events``: every ``change`` event (and ``status`` events), the same JSON as
  the ZeroMQ feed plus ``event_id`` (``<run>-<stream>-<seq>``: unique across restarts) and
  ``publish_time``; not retained, QoS ``qos``, in order.
- ``<prefix>/<stream>/prediction`` (``predictions: true``) and ``<prefix>/<stream>/stats`` (the
  heartbeats; ``stats: true``): QoS 0, not retained.
- ``<prefix>/available``: ``online`` (retained) once connected, ``offline`` at a clean stop, and
  ``offline`` as the broker-held last will when the process dies or the connection drops.

Never blocks the pipeline: paho's network thread connects (``connect_async``), reconnects with
backoff (1 s to 30 s) and sends; ``write`` only queues. At most ``queue_size`` messages wait for
the broker; beyond that a message is dropped and counted (``dropped``). On every (re)connection
the availability, each stream's state and the discovery messages are published again, so
retained topics are right whatever was dropped while the broker was away.

Home Assistant (``homeassistant: true``): per stream a ``sensor`` whose state is the activity
(attributes: the whole state document) and an ``event`` entity fired on each change, under one
device per stream, with availability wired to ``<prefix>/available``; sent retained to
``<discovery_prefix>/<component>/<node>/<object>/config`` and again whenever Home Assistant
announces it came online (``<discovery_prefix>/status``).

TLS with ``mqtts://`` (or ``tls: true``), optional CA / client certificate; user name and password
from the URL or the settings (``${NAME}`` reads an environment variable); the password is never
logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Optional
from urllib.parse import unquote, urlsplit

from realtime.core.errors import SinkError
from realtime.core.events import wire
from realtime.core.redact import expand_env, redact_url, remember, remember_secret
from realtime.sinks.state import StreamStates

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt_client

    from realtime.config import MqttSinkConfig

log = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
_UNSAFE = re.compile(r"[/+#\s]+")
_OBJECT_ID = re.compile(r"[^A-Za-z0-9_-]+")


def topic_safe(name: str) -> str:
    """A stream name as one MQTT topic level."""
    return _UNSAFE.sub("_", name) or "_"


def object_id(name: str) -> str:
    """A name as a Home Assistant object id (letters, digits, ``_`` and ``-``)."""
    return _OBJECT_ID.sub("_", name).strip("_") or "stream"


def parse_broker_url(url: str) -> tuple[str, int, bool, Optional[str], Optional[str]]:
    """``mqtt[s]://[user[:password]@]host[:port]`` -> (host, port, tls, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise SinkError(f"mqtt sink: {redact_url(url)}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise SinkError(f"mqtt sink: {redact_url(url)}: no host")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise SinkError(f"mqtt sink: {redact_url(url)}: {exc}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, tls, user, password


class MqttSink:
    """Publishes events to an MQTT broker; see the module."""

    def __init__(self, url: str = DEFAULT_URL, *, prefix: str = "realtime", qos: int = 1,
                 client_id: Optional[str] = None, username: Optional[str] = None, password: Optional[str] = None,
                 tls: bool = False, ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                 key_file: Optional[str] = None, insecure: bool = False, predictions: bool = False,
                 stats: bool = True, queue_size: int = 1000, keepalive: int = 30,
                 homeassistant: bool = False, discovery_prefix: str = "homeassistant") -> None:
        try:
            url = expand_env(url, "the MQTT broker URL")
            password = expand_env(password, "the MQTT password") if password else password
        except KeyError as exc:
            raise SinkError(f"mqtt sink: {exc.args[0]}") from None
        remember(url)
        host, port, url_tls, url_user, url_password = parse_broker_url(url)
        self.url = url
        self.name = f"mqtt:{redact_url(url)}"
        self.host, self.port = host, port
        self.tls = tls or url_tls
        self.username = username or url_user
        self._password = password or url_password
        if self._password:
            remember_secret(self._password)         # the redacting log filter hides it everywhere
        if qos not in (0, 1, 2):
            raise SinkError(f"mqtt sink: qos must be 0, 1 or 2, got {qos}")
        self.prefix = prefix.strip("/") or "realtime"
        self.qos = qos
        self.client_id = client_id or f"realtime-{socket.gethostname()}-{os.getpid()}"
        self.ca_file, self.cert_file, self.key_file, self.insecure = ca_file, cert_file, key_file, insecure
        self.predictions = predictions
        self.stats_enabled = stats
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.homeassistant = homeassistant
        self.discovery_prefix = discovery_prefix.strip("/") or "homeassistant"
        self.run_id = uuid.uuid4().hex[:12]
        self.states = StreamStates()
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self._connected = threading.Event()
        self._client: Optional["mqtt_client.Client"] = None
        self._announced: set[str] = set()      # streams whose discovery messages were sent
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: "MqttSinkConfig") -> "MqttSink":
        return cls(cfg.url, prefix=cfg.prefix, qos=cfg.qos, client_id=cfg.client_id, username=cfg.username,
                   password=cfg.password, tls=cfg.tls, ca_file=cfg.ca_file, cert_file=cfg.cert_file,
                   key_file=cfg.key_file, insecure=cfg.insecure, predictions=cfg.predictions, stats=cfg.stats,
                   queue_size=cfg.queue_size, homeassistant=cfg.homeassistant,
                   discovery_prefix=cfg.discovery_prefix)

    # ------------------------------------------------------------------ topics
    @property
    def availability_topic(self) -> str:
        return f"{self.prefix}/available"

    def topic(self, stream: str, leaf: str) -> str:
        return f"{self.prefix}/{topic_safe(stream)}/{leaf}"

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Start paho's network thread and connect in the background (a broker that is down now
        is retried; the pipeline starts regardless)."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.username:
            client.username_pw_set(self.username, self._password)
        if self.tls:
            for label, path in (("ca_file", self.ca_file), ("cert_file", self.cert_file), ("key_file", self.key_file)):
                if path and not os.path.isfile(path):
                    raise SinkError(f"mqtt sink: {label} {path} does not exist")
            try:
                client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file)
            except (OSError, ValueError) as exc:
                raise SinkError(f"mqtt sink: cannot set up TLS: {exc}") from None
            client.tls_insecure_set(self.insecure)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(self.queue_size)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect_async(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            raise SinkError(f"mqtt sink: {self.name}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(2.0):
            log.warning("MQTT broker %s not reachable yet; connecting in the background (events are "
                        "queued, at most %d)", self.name.removeprefix("mqtt:"), self.queue_size)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.name.removeprefix("mqtt:"), reason_code)
            return
        self.connects += 1
        log.info("MQTT connected to %s (prefix %s)", self.name.removeprefix("mqtt:"), self.prefix)
        # Retained topics are made right again after every (re)connection.
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        if self.homeassistant:
            client.subscribe(f"{self.discovery_prefix}/status", qos=1)
            with self._lock:
                self._announced.clear()
        for stream, state in self.states.snapshot().items():
            if self.homeassistant:
                self._announce(stream)
            client.publish(self.topic(stream, "state"), json.dumps(state), qos=self.qos, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self._connected.is_set() and self._client is not None:      # not our own disconnect()
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.name.removeprefix("mqtt:"), reason_code)
        self._connected.clear()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # Home Assistant restarted: it forgets entities that are not announced again.
        if self.homeassistant and message.topic == f"{self.discovery_prefix}/status" and message.payload == b"online":
            with self._lock:
                self._announced.clear()
            for stream in self.states.streams():
                self._announce(stream)

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        assert self._client is not None
        import paho.mqtt.client as mqtt

        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0):
            self.sent += 1            # sent, or queued until the broker is back
            return
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("MQTT %s: %d messages dropped (%s)", self.name.removeprefix("mqtt:"), self.dropped,
                        mqtt.error_string(info.rc))

    def write(self, event: Mapping[str, Any]) -> None:
        """Queue one event's messages; never waits for the broker."""
        if self._client is None:
            raise RuntimeError("MqttSink.write() before open()")
        data = wire(event)
        kind, stream = data.get("type"), str(data.get("stream", ""))
        if self.homeassistant and stream and stream not in self._announced:
            self._announce(stream)
        state = self.states.update(data)
        if state is not None:
            self._publish(self.topic(stream, "state"), json.dumps(state), self.qos, retain=True)
        message = dict(data, event_id=f"{self.run_id}-{topic_safe(stream)}-{data.get('seq')}",
                       publish_time=round(time.time(), 6))
        if kind in ("change", "status"):
            self._publish(self.topic(stream, "events"), json.dumps(message), self.qos)
        elif kind == "prediction" and self.predictions:
            self._publish(self.topic(stream, "prediction"), json.dumps(message), 0)
        elif kind == "heartbeat" and self.stats_enabled:
            self._publish(self.topic(stream, "stats"), json.dumps(message), 0)

    # ------------------------------------------------------------------ Home Assistant
    def discovery(self, stream: str) -> dict[str, dict[str, Any]]:
        """The discovery messages of ``stream``: config topic -> payload."""
        node = object_id(self.prefix)
        obj = object_id(stream)
        device = {"identifiers": [f"{node}_{obj}"], "name": f"Activity {stream}",
                  "manufacturer": "realtime", "model": "activity recognizer"}
        availability = {"availability_topic": self.availability_topic, "payload_available": "online",
                        "payload_not_available": "offline"}
        state_topic = self.topic(stream, "state")
        return {
            f"{self.discovery_prefix}/sensor/{node}/{obj}_activity/config": {
                "name": "Activity", "unique_id": f"{node}_{obj}_activity", "object_id": f"{node}_{obj}_activity",
                "state_topic": state_topic, "value_template": "{{ value_json.label or 'none' }}",
                "json_attributes_topic": state_topic, "icon": "mdi:run", "device": device, "qos": self.qos,
                **availability},
            f"{self.discovery_prefix}/event/{node}/{obj}_change/config": {
                "name": "Activity change", "unique_id": f"{node}_{obj}_change", "object_id": f"{node}_{obj}_change",
                "state_topic": self.topic(stream, "events"), "event_types": ["change"],
                # status events on the same topic are not changes: only a change has a label
                "value_template": ("{% if value_json.type == 'change' %}"
                                   "{{ {'event_type': 'change', 'label': value_json.label, "
                                   "'previous': value_json.previous, 'score': value_json.score} | tojson }}"
                                   "{% else %}{}{% endif %}"),
                "icon": "mdi:swap-horizontal", "device": device, "qos": self.qos, **availability},
        }

    def _announce(self, stream: str) -> None:
        with self._lock:
            if stream in self._announced:
                return
            self._announced.add(stream)
        for topic, payload in self.discovery(stream).items():
            self._publish(topic, json.dumps(payload), 1, retain=True)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Say ``offline`` (retained), deliver what is queued (at most 2 s), disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._connected.is_set():
                info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline and self._connected.is_set():
                    time.sleep(0.01)
            client.disconnect()
        finally:
            client.loop_stop()

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "dropped": self.dropped, "connected": self._connected.is_set(),
                "connects": self.connects}
