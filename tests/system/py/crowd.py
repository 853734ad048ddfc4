"""Connects many MQTT clients (Eclipse Paho), one per (user, token) line of stdin JSON.

Usage: crowd.py HOST PORT < [[user, token], ...]
Prints "connected N" once every client has its CONNACK, then holds the connections open
until stdin closes.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port = sys.argv[1], int(sys.argv[2])
accounts = json.loads(sys.stdin.readline())
done = threading.Semaphore(0)
failed = []


def on_connect(_client, userdata, _flags, reason_code, _properties):
    if reason_code.value != 0:
        failed.append((userdata, reason_code.value))
    done.release()


clients = []
for user, token in accounts:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-crowd", userdata=user,
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, token)
    c.on_connect = on_connect
    c.connect(host, port, keepalive=120)
    clients.append(c)
# one network loop thread for all clients would need select(); paho runs one per client
for c in clients:
    c.loop_start()
for _ in clients:
    done.acquire()
if failed:
    print(f"failed {failed}", flush=True)
    sys.exit(1)
print(f"connected {len(clients)}", flush=True)
sys.stdin.read()
