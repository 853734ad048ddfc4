"""Connects COUNT MQTT 3.1.1 clients (Eclipse Paho) one after another, each with a client id
of its own: CONNECT, SUBSCRIBE to each TOPIC, DISCONNECT.

Usage: churn.py HOST PORT USER TOKEN COUNT clean|persistent [TOPIC ...]
Prints "done COUNT" when every client has had its CONNACK and SUBACK and disconnected.
"""

import sys
import uuid

import paho.mqtt.client as mqtt

host, port, user, token, count, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
topics = sys.argv[7:]


def served(client, flag, what):
    """Runs the client's network loop until `flag` holds, for at most five seconds."""
    for _ in range(500):
        if flag():
            return
        client.loop(0.01)
    sys.exit(f"no {what}")


for _ in range(count):
    state = {"connected": False, "subscribed": not topics, "gone": False}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex}",
                         clean_session=kind == "clean", protocol=mqtt.MQTTv311)
    client.username_pw_set(user, token)
    client.on_connect = lambda *args: state.update(connected=args[3].value == 0)
    client.on_subscribe = lambda *args: state.update(subscribed=True)
    client.on_disconnect = lambda *args: state.update(gone=True)
    client.connect(host, port, keepalive=60)
    served(client, lambda: state["connected"], "CONNACK")
    if topics:
        client.subscribe([(topic, 1) for topic in topics])
        served(client, lambda: state["subscribed"], "SUBACK")
    client.disconnect()
    served(client, lambda: state["gone"], "disconnect")
print(f"done {count}", flush=True)
