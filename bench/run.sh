#!/usr/bin/env bash
# Side-by-side benchmarks: mosquitto (anonymous, no persistence), raw rumqttd (no edge) and
# Roost (auth, ACL, stamping, persistence), same load generator, same machine, one run.
#
#   bench/run.sh                 all scenarios
#   bench/run.sh fanout chat     some of: fanout chat sweep connections persistence history presence rooms push nodes
#
# presence, rooms, push and nodes run on Roost only: the other brokers have no presence, rooms,
# pushes or clusters of ours. nodes compares one Roost with two (and one in cluster mode) on
# MongoDB and NATS: it starts secantusd-rs (ROOST_MONGO_BIN, or ~/.cache/roost-mongo, as
# .ci/run installs it) and nats-server, both pinned with the load generator.
# Brokers are pinned to CPU 0 and the load generator to CPU 1 (BENCH_PIN=0 turns that off).
# Roost uses its embedded store; BENCH_STORE_URI=mongodb://... points it at an empty MongoDB
# database instead (the server is yours to start, e.g. secantusd-rs, pinned where you like).
# Results: one JSON line per run in target/bench/results.jsonl, and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(fanout chat connections persistence history presence rooms push nodes)
: "${CHAT_ROOMS:=1000}" "${CHAT_MEMBERS:=10}" "${CHAT_SECONDS:=20}"
: "${PERSIST_MESSAGES:=1000000}"
: "${PRESENCE_USERS:=2000 5000 10000 19000}" "${PRESENCE_SECONDS:=20}"
: "${ROOMS_CHURN:=10000 100000}"  # rooms created, used and deleted in all, one measurement after each
: "${PUSH_LAYOUTS:=100x100 1000x10}"  # rooms x members: each room's message is pushed to its members but one
: "${SWEEP_RATES:=1000 2000 4000 6000 8000 10000}" "${SWEEP_SECONDS:=60}"  # chat sweep: msg/s offered, rooms of 10
: "${NODES_ROOMS:=200}" "${NODES_RATE:=2}" "${NODES_SECONDS:=20}"  # rooms of 10, every other member publishing
roost_env=()  # extra settings for the next Roost started

for tool in mosquitto wrk python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install mosquitto wrk python3" >&2; exit 1; }
done
cargo build --release --quiet -p roost -p roost-bench
ulimit -n "$(ulimit -Hn)"  # many connections: as many descriptors as allowed
# each side needs a descriptor per connection, plus some to spare
: "${CONNECTIONS:=$(( $(ulimit -n) - 1000 < 20000 ? $(ulimit -n) - 1000 : 20000 ))}"

out=target/bench; mkdir -p "$out"; results=$out/results.jsonl; : > "$results"
work=$(mktemp -d); secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
pin_broker=(); pin_load=()
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then pin_broker=(taskset -c 0); pin_load=(taskset -c 1); fi
pid=; port=; http=
stop_broker() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
servers=()  # the nodes scenario's MongoDB, NATS and second node
stop_servers() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; servers=(); }
trap 'stop_broker; stop_servers; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() {  # $1: mosquitto | rumqttd | roost
  port=$(free_port); http=
  case $1 in
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 100000\n' \
        "$port" > "$work/mosquitto.conf"
      "${pin_broker[@]}" mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" & pid=$! ;;
    rumqttd)
      "${pin_broker[@]}" target/release/raw-rumqttd "$port" 2>"$work/rumqttd.log" & pid=$! ;;
    roost)
      rm -rf "$work/roost"; local hport; hport=$(free_port)
      ROOST_DATA_DIR="$work/roost" ROOST_MQTT__TCP=127.0.0.1:$port ROOST_MQTT__WS=127.0.0.1:0 \
      ROOST_HTTP__LISTEN=127.0.0.1:$hport ROOST_AUTH__SECRET=$secret RUST_LOG=warn \
        "${pin_broker[@]}" env ${BENCH_STORE_URI:+"ROOST_STORE__URI=$BENCH_STORE_URI"} "${roost_env[@]}" \
        target/release/roost serve >"$work/roost.out" 2>"$work/roost.log" & pid=$!
      http=http://127.0.0.1:$hport ;;
  esac
  for _ in $(seq 100); do
    if [ "$1" = roost ]; then
      grep -q '^roost ready' "$work/roost.out" 2>/dev/null && return 0  # printed once every listener is bound
    else
      python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}

loadgen() {  # $1: broker name, rest: scenario arguments; $tag: extra fields of the result line
  local broker=$1; shift
  local auth=()
  [ "$broker" = roost ] && auth=(--http "$http" --secret "$secret")
  local line
  line=$("${pin_load[@]}" target/release/loadgen --port "$port" --pid "$pid" "${auth[@]}" "$@") || line='{"error":"loadgen failed"}'
  echo "{\"broker\":\"$broker\",${tag:-}\"run\":$line}" | tee -a "$results"
}

wants() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

wait_port() { for _ in $(seq 200); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1)).close()" 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on port $1" >&2; exit 1; }

nodes_compare() {  # one Roost alone, one in cluster mode, two in a cluster: same store, same load
  local mongo_bin=${ROOST_MONGO_BIN:-$HOME/.cache/roost-mongo/bin/secantusd-rs} mport nport
  [ -x "$mongo_bin" ] || { echo "nodes: no secantusd-rs ($mongo_bin); see .ci/run" >&2; return; }
  command -v nats-server >/dev/null || { echo "nodes: no nats-server (apt-get install nats-server)" >&2; return; }
  mport=$(free_port); nport=$(free_port); mkdir -p "$work/mongo"
  "${pin_load[@]}" "$mongo_bin" --host 127.0.0.1 --port "$mport" --cache-size 256M --storage-path "$work/mongo" \
    >/dev/null 2>&1 & servers+=($!)
  "${pin_load[@]}" nats-server -a 127.0.0.1 -p "$nport" >/dev/null 2>&1 & servers+=($!)
  wait_port "$mport"; wait_port "$nport"
  local nodes_load=(nodes --rooms "$NODES_ROOMS" --rate "$NODES_RATE" --seconds "$NODES_SECONDS")
  local cluster=(ROOST_CLUSTER__NATS=nats://127.0.0.1:$nport ROOST_CLUSTER__NODE_TTL=6)
  local store=mongodb://127.0.0.1:$mport
  BENCH_STORE_URI=$store/alone start_broker roost; loadgen roost "${nodes_load[@]}"; stop_broker
  roost_env=("${cluster[@]}" ROOST_CLUSTER__NODE=n1)
  BENCH_STORE_URI=$store/one start_broker roost; loadgen roost "${nodes_load[@]}"; stop_broker
  # two nodes on the same core: the second one started by hand beside start_broker's
  local p2 h2
  p2=$(free_port); h2=$(free_port); rm -rf "$work/roost2"
  ROOST_DATA_DIR="$work/roost2" ROOST_MQTT__TCP=127.0.0.1:$p2 ROOST_MQTT__WS=127.0.0.1:0 \
  ROOST_HTTP__LISTEN=127.0.0.1:$h2 ROOST_AUTH__SECRET=$secret RUST_LOG=warn ROOST_STORE__URI=$store/two \
    "${pin_broker[@]}" env "${cluster[@]}" ROOST_CLUSTER__NODE=n2 target/release/roost serve \
    >"$work/roost2.out" 2>"$work/roost2.log" & servers+=($!)
  local second=$!
  BENCH_STORE_URI=$store/two start_broker roost
  wait_port "$p2"
  local line
  line=$("${pin_load[@]}" target/release/loadgen --port "$port" --port "$p2" --pid "$pid" --pid "$second" \
    --http "$http" --secret "$secret" "${nodes_load[@]}") || line='{"error":"loadgen failed"}'
  echo "{\"broker\":\"roost\",\"run\":$line}" | tee -a "$results"
  stop_broker; stop_servers; roost_env=()
}

history_load() {  # a 50-message page of one room on the running Roost: wrk flat out, then 1,000 req/s
  local token wrk_out
  token=$(ROOST_AUTH__SECRET=$secret ROOST_DATA_DIR="$work/roost" target/release/roost token --user p0)
  wrk_out=$("${pin_load[@]}" wrk -t1 -c32 -d10s --latency -H "Authorization: Bearer $token" \
    "$http/v1/rooms/persist-0/messages?limit=50")
  echo "{\"broker\":\"roost\",\"run\":$(python3 bench/wrk_json.py <<<"$wrk_out")}" | tee -a "$results"
  loadgen roost history --room persist-0 --reader p0 --rate 1000 --seconds 10
}

for scenario in "${scenarios[@]}"; do
  for broker in mosquitto rumqttd roost; do
    case $scenario in
      fanout)
        start_broker $broker; loadgen $broker fanout --subscribers 1 --messages 200000 --qos 0; stop_broker
        start_broker $broker; loadgen $broker fanout --subscribers 100 --messages 20000 --qos 0; stop_broker
        start_broker $broker; loadgen $broker fanout --subscribers 100 --messages 5000 --qos 1; stop_broker ;;
      chat)
        start_broker $broker
        loadgen $broker chat --rooms "$CHAT_ROOMS" --members "$CHAT_MEMBERS" --seconds "$CHAT_SECONDS"
        stop_broker ;;
      sweep)
        # one member message a second: rate/10 rooms of 10; a fresh broker per point
        for rate in $SWEEP_RATES; do
          start_broker $broker
          tag='"sweep":true,' loadgen $broker chat --rooms $((rate / 10)) --members 10 --rate 1 --seconds "$SWEEP_SECONDS"
          stop_broker
        done ;;
      connections)
        start_broker $broker; loadgen $broker connections --count "$CONNECTIONS"; stop_broker ;;
      persistence)
        start_broker $broker
        loadgen $broker persistence --messages "$PERSIST_MESSAGES"
        [ $broker = roost ] && wants history && history_load
        stop_broker ;;
      history)
        # history pages are read from what the persistence scenario stored
        wants persistence || [ $broker != roost ] && continue
        start_broker roost; loadgen roost persistence --messages "$PERSIST_MESSAGES"; history_load; stop_broker ;;
      presence)
        [ $broker = roost ] || continue
        for users in $PRESENCE_USERS; do
          if [ "$users" -gt "$CONNECTIONS" ]; then
            echo "presence: $users users need more descriptors than allowed ($CONNECTIONS connections), skipped" >&2
            continue
          fi
          start_broker roost; loadgen roost presence --users "$users" --seconds "$PRESENCE_SECONDS"; stop_broker
        done ;;
      rooms)
        [ $broker = roost ] || continue
        start_broker roost
        loadgen roost rooms  # the baseline, before any room is churned
        churned=0
        for total in $ROOMS_CHURN; do
          loadgen roost rooms --churned-before "$churned" --churn $((total - churned)); churned=$total
        done
        stop_broker ;;
      nodes)
        [ $broker = roost ] && nodes_compare ;;
      push)
        [ $broker = roost ] || continue
        # a local push service (in the load generator) takes every request; pushes go at once
        roost_env=(ROOST_PUSH__WEBPUSH__ALLOW_INSECURE_LOOPBACK=true ROOST_PUSH__COALESCE_MS=0)
        for layout in $PUSH_LAYOUTS; do
          start_broker roost; loadgen roost push --rooms "${layout%x*}" --members "${layout#*x}"; stop_broker
        done
        roost_env=() ;;
    esac
  done
done

python3 bench/table.py "$results" "$out/sweep.png"
