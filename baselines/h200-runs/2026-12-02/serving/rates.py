"""Poisson rates around a model's knee: fractions of the best request throughput its concurrency sweep reached."""
import json, sys
log, model, fracs = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split(",")]
best = 0.0
for line in open(log):
    try:
        e = json.loads(line)["benchmark"]["extra_info"]
    except Exception:
        continue
    if e.get("model") == model and e.get("load_mode") == "concurrency" and e.get("request_throughput_per_s"):
        best = max(best, e["request_throughput_per_s"])
print(",".join(f"{best * f:.3g}" for f in fracs) if best else "")
