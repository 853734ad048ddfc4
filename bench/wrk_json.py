"""Turns wrk --latency output (stdin) into one JSON object: requests/s and latency percentiles."""

import json
import re
import sys

text = sys.stdin.read()
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ms(value):
    number, suffix = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return round(float(number) * unit[suffix], 2)


percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M))
rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(json.dumps({
    "scenario": "history", "tool": "wrk",
    "requests_per_s": float(rate.group(1)) if rate else None,
    "latency": {f"p{p}_ms": ms(v) for p, v in percentiles.items()},
    "non_2xx": int(errors.group(1)) if errors else 0,
}))
