#!/usr/bin/env bash
# Analyst SQL through worker processes beside the same queries run inside the server: latency per
# query (p50, p90 of 40) for each --sql-workers setting given (default: 2 and 0).
#   scripts/bench-sql-workers.sh [BIN] [WORKERS...]   BIN: a built cordon (default target/debug/cordon)
set -euo pipefail
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/cordon}"
shift || true
[ -x "$BIN" ] || { echo "build cordon first (cargo build -p cordon); no $BIN" >&2; exit 1; }
settings=("${@:-2 0}")
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for w in ${settings[@]}; do
  d="$work/data-$w"; mkdir -p "$d"
  tok=$("$BIN" token create --data-dir "$d" --name bench --role admin | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  np=$(free_port); ap=$(free_port)
  nats-server -a 127.0.0.1 -p "$np" -js -sd "$d/js" >/dev/null 2>&1 & nats=$!
  sleep 1
  "$BIN" serve --listen "127.0.0.1:$ap" --nats-url "nats://127.0.0.1:$np" --data-dir "$d" --sql-workers "$w" >/dev/null 2>&1 & srv=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ap/healthz" >/dev/null && break; sleep 0.2; done
  echo "--sql-workers $w"
  python3 - "$tok" "$ap" <<'PY'
import json, sys, time, urllib.request
tok, port = sys.argv[1], sys.argv[2]
def q(sql):
    r = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/sql", data=json.dumps({"sql": sql}).encode(),
                               headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
for sql in ["SELECT 1", "SELECT count(*) FROM events", "SELECT count(*) FROM generate_series(1, 3000000)"]:
    q(sql)  # the first query starts a worker
    ts = []
    for _ in range(40):
        t = time.perf_counter(); q(sql); ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print(f"  {sql[:48]:48s} p50 {ts[20]:6.1f} ms  p90 {ts[36]:6.1f} ms")
PY
  kill "$srv" "$nats" 2>/dev/null; wait "$srv" "$nats" 2>/dev/null || true
done
