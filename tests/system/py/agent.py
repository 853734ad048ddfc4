"""A scripted MQTT client (Eclipse Paho) driven by JSON commands on stdin.

Each stdin line is one command; each stdout line is one JSON event. The system tests use it
where they need what mosquitto_pub/sub cannot show: SUBACK codes, wills, freezing a client,
WebSocket transport.
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt

out_lock = threading.Lock()


def emit(**event):
    with out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


client = None


def on_connect(_client, _userdata, _flags, reason_code, _properties):
    emit(event="connack", rc=reason_code.value)


def on_subscribe(_client, _userdata, mid, reason_codes, _properties):
    emit(event="suback", mid=mid, codes=[rc.value for rc in reason_codes])


def on_message(_client, _userdata, msg):
    emit(event="message", topic=msg.topic, payload=msg.payload.decode("utf-8", "replace"),
         qos=msg.qos, retain=bool(msg.retain))


def on_publish(_client, _userdata, mid, _reason_code, _properties):
    emit(event="published", mid=mid)


def on_disconnect(_client, _userdata, _flags, reason_code, _properties):
    emit(event="disconnected", rc=reason_code.value)


def connect(cmd):
    global client
    transport = cmd.get("transport", "tcp")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cmd.get("client_id", ""),
                         clean_session=cmd.get("clean", True), transport=transport,
                         protocol=mqtt.MQTTv311)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    if cmd.get("tls_ca"):
        client.tls_set(ca_certs=cmd["tls_ca"])
    client.username_pw_set(cmd["user"], cmd["password"])
    will = cmd.get("will")
    if will:
        client.will_set(will["topic"], will["payload"], qos=will.get("qos", 0), retain=will.get("retain", True))
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.connect(cmd["host"], cmd["port"], keepalive=cmd.get("keepalive", 60))
    client.loop_start()


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        kind = cmd["cmd"]
        if kind == "connect":
            connect(cmd)
        elif kind == "subscribe":
            client.subscribe([(t, q) for t, q in cmd["topics"]])
        elif kind == "unsubscribe":
            client.unsubscribe(cmd["topics"])
        elif kind == "publish":
            client.publish(cmd["topic"], cmd["payload"], qos=cmd.get("qos", 0), retain=cmd.get("retain", False))
        elif kind == "disconnect":
            client.disconnect()
        elif kind == "freeze":
            # stop the network thread: the socket stays open but nothing is read or sent
            client.loop_stop()
            emit(event="frozen")
        elif kind == "exit":
            # vanish without DISCONNECT: the OS closes the socket
            os._exit(0)
    os._exit(0)


if __name__ == "__main__":
    main()
