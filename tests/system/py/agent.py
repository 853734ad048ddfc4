"""A scripted MQTT client (Eclipse Paho) driven by JSON commands on stdin.

Each stdin line is one command; each stdout line is one JSON event. The system tests use it
where they need what mosquitto_pub/sub cannot show: SUBACK codes, wills, freezing a client,
WebSocket transport, MQTT 5 ("protocol": 5) reason codes and properties.
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

out_lock = threading.Lock()


def emit(**event):
    with out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


client = None


def described(properties):
    """The MQTT 5 properties a test looks at, as JSON."""
    if properties is None:
        return {}
    out = {}
    for name in ("UserProperty", "SubscriptionIdentifier", "MessageExpiryInterval", "ResponseTopic",
                 "ContentType", "AssignedClientIdentifier", "ServerKeepAlive", "ReceiveMaximum",
                 "TopicAliasMaximum", "TopicAlias", "SessionExpiryInterval"):
        if hasattr(properties, name):
            out[name] = getattr(properties, name)
    return out


def with_properties(packet_type, fields):
    if not fields:
        return None
    properties = Properties(packet_type)
    for name, value in fields.items():
        setattr(properties, name, [tuple(p) for p in value] if name == "UserProperty" else value)
    return properties


def on_connect(_client, _userdata, flags, reason_code, properties):
    emit(event="connack", rc=reason_code.value, session_present=flags.session_present,
         properties=described(properties))


def on_subscribe(_client, _userdata, mid, reason_codes, _properties):
    emit(event="suback", mid=mid, codes=[rc.value for rc in reason_codes])


def on_message(_client, _userdata, msg):
    emit(event="message", topic=msg.topic, payload=msg.payload.decode("utf-8", "replace"),
         qos=msg.qos, retain=bool(msg.retain), properties=described(getattr(msg, "properties", None)))


def on_publish(_client, _userdata, mid, reason_code, _properties):
    emit(event="published", mid=mid, rc=reason_code.value)


def on_disconnect(_client, _userdata, _flags, reason_code, _properties):
    emit(event="disconnected", rc=reason_code.value)


def connect(cmd):
    global client
    transport = cmd.get("transport", "tcp")
    v5 = cmd.get("protocol") == 5
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cmd.get("client_id", ""),
                         clean_session=None if v5 else cmd.get("clean", True), transport=transport,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    if cmd.get("tls_ca"):
        client.tls_set(ca_certs=cmd["tls_ca"])
    if cmd.get("user") is not None:
        client.username_pw_set(cmd["user"], cmd["password"])
    will = cmd.get("will")
    if will:
        client.will_set(will["topic"], will["payload"], qos=will.get("qos", 0), retain=will.get("retain", True),
                        properties=with_properties(PacketTypes.WILLMESSAGE, will.get("properties")))
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    connect_properties = with_properties(PacketTypes.CONNECT, cmd.get("properties"))
    client.connect(cmd["host"], cmd["port"], keepalive=cmd.get("keepalive", 60),
                   **({"clean_start": cmd.get("clean", True), "properties": connect_properties} if v5 else {}))
    client.loop_start()


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        kind = cmd["cmd"]
        if kind == "connect":
            connect(cmd)
        elif kind == "subscribe" and "options" in cmd:
            options = SubscribeOptions(**cmd["options"])
            client.subscribe([(t, options) for t, _ in cmd["topics"]],
                             properties=with_properties(PacketTypes.SUBSCRIBE, cmd.get("properties")))
        elif kind == "subscribe":
            client.subscribe([(t, q) for t, q in cmd["topics"]])
        elif kind == "unsubscribe":
            client.unsubscribe(cmd["topics"])
        elif kind == "publish":
            client.publish(cmd["topic"], cmd["payload"], qos=cmd.get("qos", 0), retain=cmd.get("retain", False),
                           properties=with_properties(PacketTypes.PUBLISH, cmd.get("properties")))
        elif kind == "disconnect":
            client.disconnect()
        elif kind == "freeze":
            # stop the network thread: the socket stays open but nothing is read or sent
            client.loop_stop()
            emit(event="frozen")
        elif kind == "thaw":
            client.loop_start()
        elif kind == "exit":
            # vanish without DISCONNECT: the OS closes the socket
            os._exit(0)
    os._exit(0)


if __name__ == "__main__":
    main()
