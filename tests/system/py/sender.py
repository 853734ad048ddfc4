"""A steady QoS 1 publisher (Eclipse Paho) that survives broker outages the way a careful chat
client does: it reconnects, and re-sends every message not yet acknowledged with the same `id`.

Usage: sender.py HOST PORT USER TOKEN ROOMS RATE SECONDS
ROOMS is comma-separated; message n goes to ROOMS[n % len(ROOMS)] with id "USER-n".
Publishes RATE messages per second for SECONDS, then waits (at most 180 s) until every message
is acknowledged, and prints one JSON line: {"sent": N, "acked": [ids...], "reconnects": R}.
"""

import json
import sys
import time
from collections import deque

import paho.mqtt.client as mqtt

host, port, user, token, rooms, rate, seconds = sys.argv[1:8]
port, rate, seconds = int(port), int(rate), float(seconds)
rooms = rooms.split(",")
total = int(rate * seconds)

# Paho's callbacks run on its network thread and only queue events (deque appends are atomic);
# everything else happens on the main thread, so no lock is ever held across a Paho call.
events = deque()
unacked = set()  # message numbers not yet acknowledged
by_mid = {}  # packet id on the current connection -> message number
acked = []
current = {"client": None, "connected": False, "reconnects": 0}


def send(n):
    room = rooms[n % len(rooms)]
    payload = json.dumps({"id": f"{user}-{n}", "body": f"message {n} from {user}"})
    unacked.add(n)
    if current["connected"]:
        by_mid[current["client"].publish(f"rooms/{room}/messages", payload, qos=1).mid] = n


def handle_events():
    while events:
        kind, client, value = events.popleft()
        if client is not current["client"]:
            continue  # from a connection already given up
        if kind == "connected" and value == 0:
            current["connected"] = True
            for n in sorted(unacked):  # re-send in order what was not acknowledged
                send(n)
        elif kind == "disconnected":
            current["connected"] = False
        elif kind == "acked":
            n = by_mid.pop(value, None)
            if n in unacked:
                unacked.remove(n)
                acked.append(f"{user}-{n}")


def connect():
    """A fresh client per connection: nothing of a dead session is trusted."""
    if current["client"] is not None:
        current["client"].loop_stop()
        current["reconnects"] += 1
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-sender",
                         clean_session=True, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, token)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = lambda c, _u, _f, rc, _p: events.append(("connected", c, rc.value))
    client.on_disconnect = lambda c, _u, _f, rc, _p: events.append(("disconnected", c, rc))
    client.on_publish = lambda c, _u, mid, _rc, _p: events.append(("acked", c, mid))
    current.update(client=client, connected=False)
    by_mid.clear()
    try:
        client.connect(host, port, keepalive=30)
    except OSError:
        events.append(("disconnected", client, None))
        return
    client.loop_start()


def step(last_attempt):
    """Handles events and reconnects (at most every 200 ms) when the connection is gone."""
    handle_events()
    now = time.monotonic()
    if current["connected"] or now - last_attempt < 0.2:
        return last_attempt
    if current["client"] is None or not current["client"].is_connected():
        connect()
    return now


attempt = step(-1.0)
start = time.monotonic()
n = 0
while n < total:
    attempt = step(attempt)
    due = min(total, int((time.monotonic() - start) * rate))
    while n < due:
        send(n)
        n += 1
    time.sleep(0.005)

deadline = time.monotonic() + 180
while unacked and time.monotonic() < deadline:
    attempt = step(attempt)
    time.sleep(0.02)

print(json.dumps({"sent": total, "acked": acked, "reconnects": current["reconnects"], "unacked": len(unacked)}),
      flush=True)
current["client"].loop_stop()
