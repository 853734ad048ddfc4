"""Prints the benchmark table (markdown) from run.sh's results.jsonl, with Roost's ratios."""

import json
import sys

BROKERS = ["mosquitto", "rumqttd", "roost"]
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def find(broker, scenario, **match):
    for r in runs:
        run = r["run"]
        if r["broker"] == broker and run.get("scenario") == scenario and all(run.get(k) == v for k, v in match.items()):
            return run
    return None


def dig(run, path):
    for key in path.split("."):
        if not isinstance(run, dict) or run.get(key) is None:
            return None
        run = run[key]
    return run


ROWS = [
    ("1->1 QoS 0: messages/s", "fanout", {"qos": 0, "subscribers": 1}, "deliveries_per_s", True),
    ("1->1 QoS 0: p99 ms", "fanout", {"qos": 0, "subscribers": 1}, "latency.p99_ms", False),
    ("fan-out QoS 0, 1->100: deliveries/s", "fanout", {"qos": 0, "subscribers": 100}, "deliveries_per_s", True),
    ("fan-out QoS 0: p50 ms", "fanout", {"qos": 0, "subscribers": 100}, "latency.p50_ms", False),
    ("fan-out QoS 0: p99 ms", "fanout", {"qos": 0, "subscribers": 100}, "latency.p99_ms", False),
    ("fan-out QoS 0: lost", "fanout", {"qos": 0, "subscribers": 100}, "lost", False),
    ("fan-out QoS 1, 1->100: deliveries/s", "fanout", {"qos": 1, "subscribers": 100}, "deliveries_per_s", True),
    ("fan-out QoS 1: p99 ms", "fanout", {"qos": 1, "subscribers": 100}, "latency.p99_ms", False),
    ("fan-out QoS 1: lost", "fanout", {"qos": 1, "subscribers": 100}, "lost", False),
    ("chat: offered msg/s", "chat", {}, "offered_msgs_per_s", None),
    ("chat: deliveries/s", "chat", {}, "deliveries_per_s", True),
    ("chat: p50 ms", "chat", {}, "latency.p50_ms", False),
    ("chat: p99 ms", "chat", {}, "latency.p99_ms", False),
    ("chat: lost", "chat", {}, "lost", False),
    ("connections: held", "connections", {}, "connected", None),
    ("connections: connects/s", "connections", {}, "connects_per_s", True),
    ("connections: KiB RSS per connection", "connections", {}, "kib_per_connection", False),
    ("connections: s until all shown online", "connections", {}, "all_online_s", False),
    ("persistence QoS 1: acked msg/s", "persistence", {}, "acked_per_s", True),
    ("persistence: stored in history", "persistence", {}, "stored", None),
    ("persistence: lost after PUBACK", "persistence", {}, "lost_after_ack", False),
    ("history page (limit 50), wrk flat out: req/s", "history", {"tool": "wrk"}, "requests_per_s", True),
    ("history page, wrk flat out: p99 ms", "history", {"tool": "wrk"}, "latency.p99_ms", False),
    ("history page at 1,000 req/s: p50 ms", "history", {"offered_per_s": 1000}, "latency.p50_ms", False),
    ("history page at 1,000 req/s: p99 ms", "history", {"offered_per_s": 1000}, "latency.p99_ms", False),
    ("history page at 1,000 req/s: failed", "history", {"offered_per_s": 1000}, "failed", False),
]


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        value = int(value) if value.is_integer() or value >= 1000 else round(value, 2)
    return f"{value:,}" if isinstance(value, int) else str(value)


def ratio(roost, other):
    if not isinstance(roost, (int, float)) or not isinstance(other, (int, float)) or other == 0:
        return "–"
    return f"{roost / other:.2f}x"


print("| metric | mosquitto | raw rumqttd | Roost | Roost/mosquitto | Roost/raw rumqttd |")
print("|---|---:|---:|---:|---:|---:|")
for label, scenario, match, path, higher_is_better in ROWS:
    values = [dig(find(b, scenario, **match), path) for b in BROKERS]
    if all(v is None for v in values):
        continue
    ratios = [ratio(values[2], values[0]), ratio(values[2], values[1])] if higher_is_better is not None else ["", ""]
    print(f"| {label} | {' | '.join(fmt(v) for v in values)} | {' | '.join(ratios)} |")
failures = [r for r in runs if "error" in r["run"]]
for r in failures:
    print(f"\nfailed: {r['broker']}: {r['run']['error']}")
