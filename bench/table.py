"""Prints the benchmark table (markdown) from run.sh's results.jsonl, with Roost's ratios, and
draws the chat sweep (p99 against offered rate, per broker) into the PNG named second, when
matplotlib is installed (`pip install matplotlib`)."""

import json
import sys

BROKERS = ["mosquitto", "rumqttd", "roost"]
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = [r for r in lines if not r.get("sweep")]
sweep_runs = [r for r in lines if r.get("sweep")]
# a sweep point holds when its steady p99 is within this and nothing was lost
KNEE_P99_MS = 50


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
    ("chat: first seconds' p99 ms", "chat", {}, "latency_warmup.p99_ms", False),
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


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


side_by_side = []
for label, scenario, match, path, higher_is_better in ROWS:
    values = [dig(find(b, scenario, **match), path) for b in BROKERS]
    if all(v is None for v in values):
        continue
    ratios = [ratio(values[2], values[0]), ratio(values[2], values[1])] if higher_is_better is not None else ["", ""]
    side_by_side.append([label] + [fmt(v) for v in values] + ratios)
if side_by_side:
    table(["metric", "mosquitto", "raw rumqttd", "Roost", "Roost/mosquitto", "Roost/raw rumqttd"], side_by_side)

# presence (Roost): one row per number of users; the cost per change beside the fewest users'
presence = sorted((r["run"] for r in runs if r["run"].get("scenario") == "presence"), key=lambda run: run["users"])
if presence:
    first = presence[0]
    print(f"\npresence: rooms of {first['room_size']}, {first['percent_per_s']}% of the users reconnecting per second")
    print(f"for {first['seconds']} s; latency from a DISCONNECT sent or CONNACK read to a peer reading the aggregate\n")
    table(
        ["users", "presence changes", "broker CPU s", "CPU µs per change", "vs fewest users", "idle CPU ms/s",
         "p50 ms", "p99 ms", "RSS MiB", "refused filters"],
        [[fmt(run["users"]), fmt(run["presence_changes"]), fmt(run["cpu_s"]), fmt(run["cpu_us_per_change"]),
          ratio(run["cpu_us_per_change"], first["cpu_us_per_change"]), fmt(run["idle_cpu_ms_per_s"]),
          fmt(dig(run, "latency.p50_ms")), fmt(dig(run, "latency.p99_ms")), fmt(mib(run["rss_kib"])),
          fmt(run["refused_filters"])] for run in presence],
    )

# rooms (Roost): the chat load after each number of rooms churned, beside the baseline's
rooms = sorted((r["run"] for r in runs if r["run"].get("scenario") == "rooms"), key=lambda run: run["rooms_churned"])
if rooms:
    base = rooms[0]["load"]
    print(f"\nrooms: the chat load ({base['rooms']} rooms of {base['members']}, {fmt(base['offered_msgs_per_s'])} msg/s)")
    print("after rooms were created, used and deleted; ratios to the first row\n")
    table(
        ["rooms churned", "churned/s", "RSS MiB", "RSS ratio", "CPU µs per message", "CPU ratio", "p50 ms", "p99 ms",
         "p99 ratio", "lost (load)", "lost (churn)"],
        [[fmt(run["rooms_churned"]), fmt(run["rooms_per_s"] if run["churned_now"] else None),
          fmt(mib(run["load"]["rss_kib"])), ratio(run["load"]["rss_kib"], base["rss_kib"]),
          fmt(run["load"]["cpu_us_per_message"]), ratio(run["load"]["cpu_us_per_message"], base["cpu_us_per_message"]),
          fmt(dig(run, "load.latency.p50_ms")), fmt(dig(run, "load.latency.p99_ms")),
          ratio(dig(run, "load.latency.p99_ms"), dig(base, "latency.p99_ms")),
          fmt(run["load"]["lost"]), fmt(run["churn_lost"])] for run in rooms],
    )
# nodes (Roost on MongoDB): one alone, one in cluster mode, two in a cluster, the same load
nodes = [r["run"] for r in runs if r["run"].get("scenario") == "nodes"]
if nodes:
    first = nodes[0]
    print(f"\nnodes: {first['rooms']} rooms of {first['members']} spread over the nodes, "
          f"{fmt(first['offered_msgs_per_s'])} msg/s offered by members of the first node; every node on one core\n")
    table(
        ["setup", "deliveries/s", "same node p50 ms", "p99 ms", "other node p50 ms", "p99 ms",
         "messages per seq reservation", "reservation mean ms", "CPU µs per message (all nodes)", "vs alone", "RSS MiB (all)", "lost"],
        [[("alone" if run["messages_per_seq_reservation"] is None else f"{run['nodes']} in a cluster"),
          fmt(run["deliveries_per_s"]), fmt(dig(run, "latency_same_node.p50_ms")),
          fmt(dig(run, "latency_same_node.p99_ms")), fmt(dig(run, "latency_other_node.p50_ms")),
          fmt(dig(run, "latency_other_node.p99_ms")), fmt(run["messages_per_seq_reservation"]),
          fmt(run["seq_reservation_mean_ms"]),
          fmt(run["cpu_us_per_message"]), ratio(run["cpu_us_per_message"], first["cpu_us_per_message"]),
          fmt(mib(run["rss_kib"])), fmt(run["lost"])] for run in nodes],
    )
# the chat sweep: each broker's points, and its knee
if sweep_runs:
    points = {b: sorted((r["run"] for r in sweep_runs if r["broker"] == b and "error" not in r["run"]),
                        key=lambda run: run["offered_msgs_per_s"]) for b in BROKERS}
    first = next(run for b in BROKERS for run in points[b])
    print(f"\nchat sweep: rooms of {first['members']}, one message a second per member, {first.get('warmup_s', 0)} s")
    print(f"of warm-up reported apart; the knee is the highest rate with steady p99 <= {KNEE_P99_MS} ms and nothing lost\n")
    rows = []
    for b in BROKERS:
        for run in points[b]:
            rows.append([b, fmt(run["offered_msgs_per_s"]), fmt(dig(run, "latency.p50_ms")),
                         fmt(dig(run, "latency.p99_ms")), fmt(dig(run, "latency_warmup.p99_ms")),
                         fmt(run["lost"]), fmt(run["cpu_us_per_message"])])
    table(["broker", "offered msg/s", "p50 ms", "p99 ms", "first seconds p99 ms", "lost", "CPU µs per message"], rows)
    knees = {}
    for b in BROKERS:
        held = [run["offered_msgs_per_s"] for run in points[b]
                if run["lost"] == 0 and (dig(run, "latency.p99_ms") or 1e9) <= KNEE_P99_MS]
        knees[b] = max(held) if held else None
    print("\nknee: " + ", ".join(f"{b} {fmt(knees[b])}" for b in BROKERS))
    if len(sys.argv) > 2:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(no plot: pip install matplotlib)")
        else:
            fig, ax = plt.subplots(figsize=(7, 4))
            for b in BROKERS:
                if points[b]:
                    ax.plot([run["offered_msgs_per_s"] for run in points[b]],
                            [max(dig(run, "latency.p99_ms") or 0, 0.01) for run in points[b]], marker="o", label=b)
            ax.axhline(KNEE_P99_MS, color="grey", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("offered msg/s (rooms of 10)")
            ax.set_ylabel("steady p99 ms")
            ax.legend()
            fig.tight_layout()
            fig.savefig(sys.argv[2], dpi=100)
            print(f"plot: {sys.argv[2]}")
failures = [r for r in lines if "error" in r["run"]]
for r in failures:
    print(f"\nfailed: {r['broker']}: {r['run']['error']}")
