"""A Roost chat bot in Python (Eclipse Paho): answers commands in every room it is in, posts readings.

It follows all its rooms on one subscription (`rooms/+/messages`: rooms its owner adds it to
later too). Commands, as room messages: `!ping` (answers `pong @<sender>`), `!echo <text>`,
`!stats` (messages seen per sender), `!report` (the same as a text file, uploaded and attached),
answered in the room they came from; only messages are commands, never the edits, deletes and
reactions that share their topic. It prints the attachments of the messages it receives
(name, type, size). With --send-file PATH it uploads that file to --room once subscribed and
sends it as an attachment (PROTOCOL.md, 11). With --readings-every N it posts the machine's
load average to --room every N seconds, the number also in the message's `data`. After a reconnect it fetches what it missed in each room from
history by `seq` (PROTOCOL.md, 8).

    ROOST_USER=helper ROOST_TOKEN=<bot token> python3 bot.py --room lab

Prints `ready` once subscribed.
"""

import argparse
import collections
import json
import mimetypes
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt


# how far below the highest seq handled a late message is still taken (and remembered)
HANDLED_KEPT = 1000


class Bot:
    def __init__(self, args):
        self.args = args
        self.user = os.environ["ROOST_USER"]
        self.token = os.environ["ROOST_TOKEN"]
        # room -> the highest seq handled there, and the seqs handled lately: two publishers'
        # messages can arrive the other way round from their seqs, and both are handled
        self.last_seq = {}
        self.handled = collections.defaultdict(set)
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
            if self.args.send_file:
                self.send_file(self.args.room, self.args.send_file)
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
        room, seq = envelope["room"], envelope["seq"]
        handled, last = self.handled[room], self.last_seq.get(room, 0)
        if seq in handled or seq <= last - HANDLED_KEPT:
            return
        handled.add(seq)
        self.last_seq[room] = max(seq, last)
        if len(handled) > 2 * HANDLED_KEPT:
            handled.difference_update({old for old in handled if old <= self.last_seq[room] - HANDLED_KEPT})
        if "type" in envelope or envelope.get("deleted"):
            # an edit, delete or reaction of message `target` (PROTOCOL.md, 4), or a deleted message
            # from history: it moves last_seq on, but is no command and not counted
            return
        sender, body = envelope["from"], envelope["body"]
        self.seen[sender] += 1
        for attachment in envelope.get("attachments", []):
            print(f"{room} [{envelope['seq']}] {sender}: attachment {attachment['filename']} "
                  f"({attachment['content_type']}, {attachment['size']} bytes) media {attachment['media']}",
                  flush=True)
        if sender == self.user or "edited_at" in envelope:
            # history shows a message with its newest edit's body: an edit is never a command
            return
        if body == "!ping":
            self.say(room, f"pong @{sender}")
        elif body.startswith("!echo "):
            self.say(room, body[len("!echo "):])
        elif body == "!stats":
            self.say(room, ", ".join(f"{who}: {count}" for who, count in self.seen.most_common()))
        elif body == "!report":
            # uploads on paho's network thread, for brevity: a busy bot would use a worker thread
            report = "".join(f"{who}\t{count}\n" for who, count in self.seen.most_common())
            self.send_bytes(room, report.encode(), "report.txt", "text/plain; charset=utf-8",
                            body=f"report for @{sender}")

    def say(self, room, body, data=None, attachments=None):
        message = {"body": body}
        if data is not None:
            message["data"] = data
        if attachments:
            message["attachments"] = attachments
        self.client.publish(f"rooms/{room}/messages", json.dumps(message), qos=1)

    def upload(self, room, data, filename, content_type):
        """POST /v1/rooms/{room}/media: the upload ({"id","url","content_type","size",...}).

        The body is the file's bytes, `Content-Type` its type (the server sniffs the bytes and
        refuses, 415, a type outside the declared family; `application/octet-stream` lets the
        bytes decide). Raises urllib.error.HTTPError on 413 (too large, quota), 415, 403/404."""
        query = urllib.parse.urlencode({"filename": filename})
        url = f"{self.args.http}/v1/rooms/{urllib.parse.quote(room, safe='')}/media?{query}"
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "authorization": f"Bearer {self.token}", "content-type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def send_bytes(self, room, data, filename, content_type, body=None):
        """Uploads `data` to `room` and sends a message that attaches it; False when refused."""
        try:
            uploaded = self.upload(room, data, filename, content_type)
        except urllib.error.HTTPError as refused:
            # {"error":{"code":"payload_too_large"|"quota_exceeded"|"unsupported_media_type"|...,"message"}}
            try:
                detail = json.loads(refused.read())["error"]
            except (ValueError, KeyError, TypeError):
                detail = {}
            print(f"upload of {filename} refused: {refused.code} {detail.get('code')}: {detail.get('message')}",
                  file=sys.stderr, flush=True)
            return False
        except OSError as failed:  # the HTTP API is unreachable
            print(f"upload of {filename} failed: {failed}", file=sys.stderr, flush=True)
            return False
        self.say(room, body if body is not None else uploaded["filename"], attachments=[{"media": uploaded["id"]}])
        return True

    def send_file(self, room, path, body=None):
        """Uploads the file at `path` (its type guessed from its name) and sends it to `room`."""
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as file:
            return self.send_bytes(room, file.read(), os.path.basename(path), content_type, body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ROOST_MQTT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ROOST_MQTT_PORT", "1883")))
    parser.add_argument("--http", default=os.environ.get("ROOST_HTTP", "http://127.0.0.1:8080"))
    parser.add_argument("--room", default="lab", help="where readings go")
    parser.add_argument("--send-file", metavar="PATH", help="upload PATH to --room once subscribed and send it")
    parser.add_argument("--readings-every", type=float, default=0, help="seconds; 0: no readings")
    bot = Bot(parser.parse_args())
    signal.signal(signal.SIGTERM, lambda *_: bot.stop.set())
    signal.signal(signal.SIGINT, lambda *_: bot.stop.set())
    bot.run()


if __name__ == "__main__":
    main()
