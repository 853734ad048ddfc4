#!/usr/bin/env bash
# Runs the Eclipse Paho interoperability suites, MQTT 3.1.1 and 5, against a fresh Roost
# started with config/conformance.toml, and prints unittest's summary of each.
#
#   scripts/conformance.sh PAHO_CHECKOUT   # a checkout of github.com/eclipse/paho.mqtt.testing
#
# Exits non-zero when a suite fails. The suites are not part of this repository.
set -euo pipefail

checkout=${1:?usage: scripts/conformance.sh PAHO_CHECKOUT}
suites="$(cd "$checkout" && pwd)/interoperability"
[[ -f "$suites/client_test.py" ]] || { echo "no interoperability/client_test.py in $checkout" >&2; exit 2; }
cd "$(dirname "$0")/.."

cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "$roost" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
ROOST_DATA_DIR="$work/data" ROOST_MQTT__TCP=127.0.0.1:0 ROOST_MQTT__WS=127.0.0.1:0 ROOST_HTTP__LISTEN=127.0.0.1:0 \
  target/release/roost serve --config config/conformance.toml >"$work/roost.out" 2>"$work/roost.log" &
roost=$!
for _ in $(seq 100); do
  grep -q ' ready ' "$work/roost.out" && break
  sleep 0.1
done
port=$(sed -n 's/.* mqtt=[^ ]*:\([0-9]*\) .*/\1/p' "$work/roost.out")
[[ -n "$port" ]] || { echo "roost did not start:" >&2; cat "$work/roost.log" >&2; exit 1; }

status=0
for suite in client_test.py client_test5.py; do
  echo "== $suite against Roost on port $port"
  # the suites read -p themselves, then hand sys.argv to unittest, which does not know it
  (cd "$suites" && timeout 600 python3 -c "import runpy, sys, unittest
main = unittest.main
unittest.main = lambda *args, **kwargs: main(argv=[sys.argv[0]])
sys.argv = ['$suite', '-p', '$port']
runpy.run_path('$suite', run_name='__main__')") >"$work/$suite.log" 2>&1 || status=1
  grep -E '^(Ran [0-9]+ tests|OK|FAILED)' "$work/$suite.log" || { tail -20 "$work/$suite.log"; status=1; }
  [[ $status -eq 0 ]] || grep -E '^(FAIL|ERROR):' "$work/$suite.log" || true
done
exit $status
