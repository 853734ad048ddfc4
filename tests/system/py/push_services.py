"""Stand-ins for the push services Roost calls, checking what the real ones check.

Web Push (RFC 8030): the request's headers, its VAPID token (RFC 8292: ES256 verified with the
key in `k=`, `aud` = the endpoint's origin, `exp` within 24 h) and its payload, decrypted as a
browser would (RFC 8291, with http_ece, the reference implementation). FCM HTTP v1: the OAuth 2
assertion (RS256, verified with the service account's public key) and the access token on every
send. APNs (HTTP/2 only): the provider token (ES256, verified with the team key) and the
headers. A request that fails a check is answered as the real service would (400/401/403) and
recorded as an error.

Control, on the HTTP/1.1 port (JSON):
  POST /_control/vapid {"key"}            the server's VAPID public key (k= must equal it)
  POST /_control/subscribe                a browser's subscription: {"endpoint","keys"}
  POST /_control/script {"id","status","retry_after"?,"times"}  the next answers of an endpoint
  GET  /_control/received                 {"webpush":[...],"fcm":[...],"apns":[...],"errors":[...]}
  GET  /_control/fcm                      the service account key file's JSON
  GET  /_control/apns                     {"key" (PEM), "key_id", "team_id", "topic"}

Prints "webpush=PORT apns=PORT" once listening.
"""

import asyncio
import base64
import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.config
import h2.connection
import h2.events
import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

LOCK = threading.Lock()
STATE = {
    "vapid": None,
    "subscriptions": {},  # id -> (private key, auth secret)
    "scripts": {},  # id -> [(status, retry_after)]
    "received": {"webpush": [], "fcm": [], "apns": []},
    "errors": [],
    "tokens": set(),  # FCM access tokens issued
}
FCM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FCM_PROJECT = "roost-test"
FCM_EMAIL = "push@roost-test.iam.gserviceaccount.com"
APNS_KEY = ec.generate_private_key(ec.SECP256R1())
APNS = {"key_id": "ABC123DEFG", "team_id": "TEAM123456", "topic": "org.roost.chat"}
URGENCIES = {"very-low", "low", "normal", "high"}
BASE64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(kind, message):
    with LOCK:
        STATE["errors"].append(f"{kind}: {message}")
    return message


def scripted(key):
    with LOCK:
        answers = STATE["scripts"].get(key)
        if answers:
            return answers.pop(0)
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def origin(self):
        return f"http://{self.headers['Host']}"

    def do_GET(self):
        if self.path == "/_control/received":
            with LOCK:
                self.answer(200, {**STATE["received"], "errors": STATE["errors"]})
        elif self.path == "/_control/fcm":
            pem = FCM_KEY.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            self.answer(200, {"type": "service_account", "project_id": FCM_PROJECT, "private_key_id": "k1",
                              "private_key": pem, "client_email": FCM_EMAIL,
                              "token_uri": f"{self.origin()}/token"})
        elif self.path == "/_control/apns":
            pem = APNS_KEY.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            self.answer(200, {"key": pem, **APNS})
        else:
            self.answer(404, {"error": "no such path"})

    def do_POST(self):
        body = self.body()
        path = self.path
        if path == "/_control/vapid":
            STATE["vapid"] = json.loads(body)["key"]
            self.answer(204)
        elif path == "/_control/subscribe":
            key = ec.generate_private_key(ec.SECP256R1())
            auth = uuid.uuid4().bytes
            sid = uuid.uuid4().hex
            with LOCK:
                STATE["subscriptions"][sid] = (key, auth)
            public = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            self.answer(200, {"endpoint": f"{self.origin()}/push/{sid}",
                              "keys": {"p256dh": b64url(public), "auth": b64url(auth)}})
        elif path == "/_control/script":
            script = json.loads(body)
            with LOCK:
                STATE["scripts"].setdefault(script["id"], []).extend(
                    [(script["status"], script.get("retry_after"))] * script.get("times", 1)
                )
            self.answer(204)
        elif path.startswith("/push/"):
            self.webpush(path[len("/push/"):], body)
        elif path == "/token":
            self.fcm_token(body)
        elif path == f"/v1/projects/{FCM_PROJECT}/messages:send":
            self.fcm_send(body)
        else:
            self.answer(404, {"error": "no such path"})

    def webpush(self, sid, body):
        with LOCK:
            subscription = STATE["subscriptions"].get(sid)
        if subscription is None:
            return self.answer(404, {"error": error("webpush", f"no subscription {sid}")})
        h = self.headers
        problems = []
        if h.get("Content-Encoding") != "aes128gcm":
            problems.append(f"Content-Encoding {h.get('Content-Encoding')}")
        if not (h.get("TTL") or "").isdigit():
            problems.append(f"TTL {h.get('TTL')}")
        if h.get("Urgency", "normal") not in URGENCIES:
            problems.append(f"Urgency {h.get('Urgency')}")
        topic = h.get("Topic")
        if topic is not None and (len(topic) > 32 or not set(topic) <= BASE64URL):
            problems.append(f"Topic {topic}")
        claims = None
        authorization = h.get("Authorization", "")
        try:
            scheme, params = authorization.split(" ", 1)
            fields = dict(part.strip().split("=", 1) for part in params.split(","))
            assert scheme == "vapid", "scheme"
            assert fields["k"] == STATE["vapid"], "k is not the server's VAPID key"
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
            claims = jwt.decode(fields["t"], public, algorithms=["ES256"], audience=self.origin(),
                                options={"require": ["exp", "aud"]})
            assert claims["exp"] <= time.time() + 24 * 3600, "exp more than 24 h ahead"
            assert claims.get("sub", "").startswith(("mailto:", "https:")), "sub"
        except Exception as e:  # noqa: BLE001 - any failure is the push service's 401/403
            return self.answer(403, {"error": error("webpush", f"VAPID: {e!r}")})
        if problems:
            return self.answer(400, {"error": error("webpush", ", ".join(problems))})
        key, auth = subscription
        try:
            payload = json.loads(http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm"))
        except Exception as e:  # noqa: BLE001
            return self.answer(400, {"error": error("webpush", f"decrypting: {e!r}")})
        answer = scripted(sid)
        with LOCK:
            STATE["received"]["webpush"].append({
                "subscription": sid, "payload": payload, "ttl": int(h["TTL"]), "urgency": h.get("Urgency"),
                "topic": topic, "answered": answer[0] if answer else 201, "at": time.time(),
            })
        if answer:
            status, retry_after = answer
            return self.answer(status, {"error": "scripted"}, [("Retry-After", retry_after)] if retry_after else [])
        self.answer(201, None, [("Location", f"{self.origin()}/message/{uuid.uuid4().hex}")])

    def fcm_token(self, body):
        form = urllib.parse.parse_qs(body.decode())
        try:
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "grant_type"
            assertion = form["assertion"][0]
            assert jwt.get_unverified_header(assertion).get("kid") == "k1", "kid"
            claims = jwt.decode(assertion, FCM_KEY.public_key(), algorithms=["RS256"],
                                audience=f"{self.origin()}/token", options={"require": ["exp", "iat", "iss"]})
            assert claims["iss"] == FCM_EMAIL, "iss"
            assert "https://www.googleapis.com/auth/firebase.messaging" in claims["scope"].split(), "scope"
            assert claims["exp"] - claims["iat"] <= 3600, "lifetime"
        except Exception as e:  # noqa: BLE001
            return self.answer(400, {"error": "invalid_grant", "error_description": error("fcm", f"token: {e!r}")})
        token = uuid.uuid4().hex
        with LOCK:
            STATE["tokens"].add(token)
        self.answer(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def fcm_send(self, body):
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
        with LOCK:
            known = bearer in STATE["tokens"]
        if not known:
            return self.answer(401, {"error": {"status": "UNAUTHENTICATED", "message": error("fcm", "bad token")}})
        try:
            message = json.loads(body)["message"]
            assert isinstance(message["token"], str), "token"
            assert all(isinstance(v, str) for v in message["data"].values()), "data values are strings"
            assert message["android"]["collapse_key"] == message["data"]["room"], "collapse_key"
        except Exception as e:  # noqa: BLE001
            return self.answer(400, {"error": {"status": "INVALID_ARGUMENT", "message": error("fcm", repr(e))}})
        if message["token"] == "unregistered-token":
            details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]
            return self.answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "details": details}})
        with LOCK:
            STATE["received"]["fcm"].append(message)
        self.answer(200, {"name": f"projects/{FCM_PROJECT}/messages/{uuid.uuid4().hex}"})


async def apns_connection(reader, writer):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    streams = {}
    while data := await reader.read(65536):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                streams[event.stream_id] = [dict(event.headers), b""]
            elif isinstance(event, h2.events.DataReceived):
                streams[event.stream_id][1] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = streams.pop(event.stream_id)
                status, answer = apns_answer(headers, body)
                data = json.dumps(answer).encode() if answer else b""
                conn.send_headers(event.stream_id, [(":status", str(status)), ("apns-id", str(uuid.uuid4()))],
                                  end_stream=not data)
                if data:
                    conn.send_data(event.stream_id, data, end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()
    writer.close()


def apns_answer(headers, body):
    try:
        assert headers[":method"] == "POST", "method"
        device = headers[":path"].removeprefix("/3/device/")
        token = headers["authorization"].removeprefix("bearer ")
        header = jwt.get_unverified_header(token)
        assert header.get("kid") == APNS["key_id"], "kid"
        claims = jwt.decode(token, APNS_KEY.public_key(), algorithms=["ES256"], options={"require": ["iat", "iss"]})
        assert claims["iss"] == APNS["team_id"], "iss"
        assert abs(claims["iat"] - time.time()) < 3600, "iat"
    except Exception as e:  # noqa: BLE001
        return 403, {"reason": "InvalidProviderToken", "detail": error("apns", repr(e))}
    try:
        assert headers.get("apns-topic") == APNS["topic"], "apns-topic"
        assert headers.get("apns-push-type") == "alert", "apns-push-type"
        assert headers.get("apns-priority") in ("5", "10"), "apns-priority"
        assert len(headers.get("apns-collapse-id", "").encode()) <= 64, "apns-collapse-id"
        payload = json.loads(body)
        assert isinstance(payload["aps"]["badge"], int), "badge"
        assert payload["aps"]["alert"]["body"], "alert"
    except Exception as e:  # noqa: BLE001
        return 400, {"reason": "BadRequest", "detail": error("apns", repr(e))}
    if device == "bad-token":
        return 400, {"reason": "BadDeviceToken"}
    with LOCK:
        STATE["received"]["apns"].append({"device": device, "headers": {k: v for k, v in headers.items()
                                                                        if k.startswith("apns-")},
                                          "payload": payload})
    return 200, None


def main():
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    loop = asyncio.new_event_loop()
    apns = loop.run_until_complete(asyncio.start_server(apns_connection, "127.0.0.1", 0))
    print(f"webpush={http.server_address[1]} apns={apns.sockets[0].getsockname()[1]}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
