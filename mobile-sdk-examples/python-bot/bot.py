"""A Roost chat bot in Python (Eclipse Paho): answers commands in every room it is in, posts readings.

It follows all its rooms on one subscription (`rooms/+/messages`: rooms its owner adds it to
later too). Commands, as room messages: `!ping` (answers `pong @<sender>`), `!echo <text>`,
`!stats` (messages seen per sender), answered in the room they came from. With
--readings-every N it posts the machine's load average to --room every N seconds, the number
also in the message's `data`. After a reconnect it fetches what it missed in each room from
history by `seq` (PROTOCOL.md, 8).

    ROOST_USER=helper ROOST_TOKEN=<bot token> python3 bot.py --room lab

Prints `ready` once subscribed.
"""

import argparse
import collections
import json
import os
import signal
import sys
import threading
import urllib.request

import paho.mqtt.client as mqtt


class Bot:
    def __init__(self, args):
        self.args = args
        self.user = os.environ["ROOST_USER"]
        self.token = os.environ["ROOST_TOKEN"]
        # room -> the last seq handled there
        self.last_seq = {}
        self.subscribed_once = False
        self.seen = collections.Counter()
        self.stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.user}-bot",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(self.user, self.token)
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message

    def run(self):
        self.client.connect(self.args.host, self.args.port, keepalive=30)
        self.client.loop_start()
        while not self.stop.wait(self.args.readings_every or None):
            load = os.getloadavg()[0]
            self.say(self.args.room, f"load {load:.2f}", data={"load1": load})
        self.client.disconnect()
        self.client.loop_stop()

    def on_connect(self, client, _userdata, _flags, reason_code, _properties):
        if reason_code.is_failure:
            sys.exit(f"refused: {reason_code}")
        client.subscribe("rooms/+/messages", qos=1)

    def on_subscribe(self, _client, _userdata, _mid, _reason_codes, _properties):
        if not self.subscribed_once:
            self.subscribed_once = True
            print("ready", flush=True)
            return
        for room, last_seq in list(self.last_seq.items()):
            for envelope in self.missed(room, last_seq):
                self.handle(envelope)

    def missed(self, room, last_seq):
        """The room's messages after the last one handled, oldest first, from history."""
        url = f"{self.args.http}/v1/rooms/{room}/messages?after={last_seq}&limit=500"
        request = urllib.request.Request(url, headers={"authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["messages"]

    def on_message(self, _client, _userdata, message):
        self.handle(json.loads(message.payload))

    def handle(self, envelope):
        room = envelope["room"]
        if envelope["seq"] <= self.last_seq.get(room, 0):
            return
        self.last_seq[room] = envelope["seq"]
        sender, body = envelope["from"], envelope["body"]
        self.seen[sender] += 1
        if sender == self.user:
            return
        if body == "!ping":
            self.say(room, f"pong @{sender}")
        elif body.startswith("!echo "):
            self.say(room, body[len("!echo "):])
        elif body == "!stats":
            self.say(room, ", ".join(f"{who}: {count}" for who, count in self.seen.most_common()))

    def say(self, room, body, data=None):
        message = {"body": body} if data is None else {"body": body, "data": data}
        self.client.publish(f"rooms/{room}/messages", json.dumps(message), qos=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ROOST_MQTT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROOST_MQTT_PORT", "1883")))
    parser.add_argument("--http", default=os.environ.get("ROOST_HTTP", "http://127.0.0.1:8080"))
    parser.add_argument("--room", default="lab", help="where readings go")
    parser.add_argument("--readings-every", type=float, default=0, help="seconds; 0: no readings")
    bot = Bot(parser.parse_args())
    signal.signal(signal.SIGTERM, lambda *_: bot.stop.set())
    signal.signal(signal.SIGINT, lambda *_: bot.stop.set())
    bot.run()


if __name__ == "__main__":
    main()
