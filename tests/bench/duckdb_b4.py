"""In-run peer for B4: DuckDB answering the analyst's questions on Cordon's own Parquet files.

usage: duckdb_b4.py PARQUET_GLOB, then one JSON request per line on stdin, one JSON answer per line:
  {"op": "version"}                                   -> {"version": v}
  {"op": "sql", "sql": q, "data": bool}               -> {"secs": s, "rows": n, "data": rows if asked}
  {"op": "points", "clients": c, "secs": s, "queries": {shape: [sql, ...]}}
      -> {"calls": n, "cpu": s, "shapes": {shape: {"p50": s, "p99": s, "calls": n}}}
`points` runs `clients` threads for `secs` seconds, each asking the shapes in turn (its own cursor on
one connection), as cordon-bench's REST clients do. The table is a view over the files, with
DuckDB's Parquet metadata cache on so repeated questions do not re-read every footer.
"""
import json, os, sys, threading, time

import duckdb

con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_object_cache = true")
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{sys.argv[1]}', hive_partitioning = false)")


def cpu():
    t = os.times()
    return t.user + t.system


def pct(v, p):
    v = sorted(v)
    return v[int(round((len(v) - 1) * p))] if v else None


def points(req):
    shapes = sorted(req["queries"])
    until = time.perf_counter() + req["secs"]
    lat = {s: [] for s in shapes}
    lock = threading.Lock()

    def client(c):
        cur = con.cursor()
        k, mine = c, []
        while time.perf_counter() < until:
            shape = shapes[k % len(shapes)]
            qs = req["queries"][shape]
            q = qs[(k // len(shapes)) % len(qs)]
            t = time.perf_counter()
            cur.execute(q).fetchall()
            mine.append((shape, time.perf_counter() - t))
            k += req["clients"]
        with lock:
            for shape, s in mine:
                lat[shape].append(s)

    c0 = cpu()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(req["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {s: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "calls": len(v)} for s, v in lat.items()}
    return {"calls": sum(len(v) for v in lat.values()), "cpu": cpu() - c0, "shapes": out}


def answer(req):
    op = req["op"]
    if op == "version":
        return {"version": duckdb.__version__}
    if op == "sql":
        t = time.perf_counter()
        rows = con.execute(req["sql"]).fetchall()
        out = {"secs": time.perf_counter() - t, "rows": len(rows)}
        if req.get("data"):
            out["data"] = [[v if isinstance(v, (int, float, str)) or v is None else str(v) for v in r] for r in rows]
        return out
    if op == "points":
        return points(req)
    return {"error": f"unknown op {op}"}


for line in sys.stdin:
    try:
        print(json.dumps(answer(json.loads(line))), flush=True)
    except Exception as e:  # the bench reports it and stops
        print(json.dumps({"error": repr(e)}), flush=True)
