#!/usr/bin/env python3
"""Poisson rates for a model's open-loop points, from its closed-loop sweep in a results log.

    python3 tools/serving_rates.py LOG MODEL 0.5,0.9          -> "0.388,0.698" (fractions of the best req/s)
    python3 tools/serving_rates.py --failed LOG               -> exit 0 if LOG recorded a failed case, else 1

The best request throughput is the highest ``request_throughput_per_s`` of the model's concurrency
points in the log (the latest record of each case, as the results log keeps it). Prints nothing and
exits 1 where the log holds no such point, so a plan step ``R=$(...) && pytest ... --moeperf-rate $R``
stops instead of running an empty sweep. Used by tools/plans/h200-crossover*.plan.
"""

from __future__ import annotations

import json
import sys


def records(path: str) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line after a kill
            if isinstance(rec, dict):
                out.append(rec)
    return out


def best_request_rate(recs: list[dict], model: str) -> float:
    latest: dict[str, dict] = {}
    for rec in recs:
        if rec.get("type") == "case":
            bench = rec.get("benchmark") or {}
            latest[bench.get("fullname", "")] = bench.get("extra_info") or {}
    return max((x["request_throughput_per_s"] for x in latest.values()
                if x.get("model") == model and x.get("load_mode") == "concurrency"
                and x.get("request_throughput_per_s")), default=0.0)


def rates(recs: list[dict], model: str, fractions: list[float]) -> str:
    best = best_request_rate(recs, model)
    return ",".join(f"{best * f:.3g}" for f in fractions) if best else ""


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--failed":
        return 0 if any(r.get("type") == "failed" for r in records(argv[1])) else 1
    if len(argv) != 3:
        print("usage: serving_rates.py LOG MODEL FRACTIONS | --failed LOG", file=sys.stderr)
        return 2
    text = rates(records(argv[0]), argv[1], [float(f) for f in argv[2].split(",")])
    print(text)
    return 0 if text else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
