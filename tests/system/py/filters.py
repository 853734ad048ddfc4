"""Subscribes to and unsubscribes from many distinct filters on one connection (Eclipse Paho),
as a client trying to fill the broker with filters would.

Usage: filters.py HOST PORT USER TOKEN COUNT TEMPLATE...
Filter n is TEMPLATE[n % len(TEMPLATE)] with {n} replaced by n. Keeps at most 200 SUBSCRIBEs
in flight, unsubscribes each granted filter at once, and prints one JSON line:
{"granted": [distinct filters granted], "refused": number of refusals}.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port, user, token, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
templates = sys.argv[6:]
WINDOW = 200

lock = threading.Condition()
pending = {}  # mid -> filter
granted = set()
refused = 0
connected = threading.Event()


def on_connect(_client, _userdata, _flags, reason_code, _properties):
    if reason_code.value == 0:
        connected.set()


def on_subscribe(client, _userdata, mid, reason_codes, _properties):
    global refused
    with lock:
        topic = pending.pop(mid, None)
        if reason_codes[0].value < 0x80:
            granted.add(topic)
            client.unsubscribe(topic)
        else:
            refused += 1
        lock.notify_all()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-filters", protocol=mqtt.MQTTv311)
client.username_pw_set(user, token)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.connect(host, port, keepalive=60)
client.loop_start()
if not connected.wait(10):
    sys.exit("no CONNACK")
for n in range(count):
    topic = templates[n % len(templates)].replace("{n}", str(n))
    with lock:
        if not lock.wait_for(lambda: len(pending) < WINDOW, timeout=30):
            sys.exit("SUBACKs stopped coming")
        _, mid = client.subscribe(topic, 0)
        pending[mid] = topic
with lock:
    if not lock.wait_for(lambda: not pending, timeout=30):
        sys.exit("SUBACKs stopped coming")
client.disconnect()
client.loop_stop()
print(json.dumps({"granted": sorted(granted), "refused": refused}), flush=True)
