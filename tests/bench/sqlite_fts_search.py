"""In-run peer for B5: SQLite FTS5 answering the same searches Cordon answers.

usage: sqlite_fts_search.py DOCS_TSV QUERIES_JSON OUT_DIR -> one JSON line:
  {"bytes": n, "shapes": {shape: {"p50": s, "p99": s, "mean": s, "matches": n}}, "version": v}
DOCS_TSV: host, kind, user, ips, hashes, domains, text, time (microseconds), tab-separated, written by
cordon-bench from the same events. QUERIES_JSON: [[shape, [{"fts": expr, "from": t|null, "to": t|null}]]].
Each query is any 10 matching rows plus the count (no order: sorting by time would cost more).
Loading and indexing are not timed (B2 times indexing).
"""
import json, os, sqlite3, sys, time

src, qfile, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
db = os.path.join(out_dir, "fts_search.db")
if os.path.exists(db):
    os.remove(db)
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE VIRTUAL TABLE ev USING fts5(host, kind, user, ips, hashes, domains, text, t UNINDEXED)")
with open(src, encoding="utf-8") as f:
    con.executemany("INSERT INTO ev VALUES (?,?,?,?,?,?,?,?)",
                    (line.rstrip("\n").split("\t") for line in f))
con.commit()
con.execute("INSERT INTO ev(ev) VALUES('optimize')")
con.commit()


def run(q):
    where, args = "ev MATCH ?", [q["fts"]]
    if q.get("from") is not None:
        where += " AND CAST(t AS INTEGER) >= ? AND CAST(t AS INTEGER) < ?"
        args += [q["from"], q["to"]]
    rows = con.execute(f"SELECT rowid FROM ev WHERE {where} LIMIT 10", args).fetchall()
    n = con.execute(f"SELECT count(*) FROM ev WHERE {where}", args).fetchone()[0]
    return len(rows), n


shapes = {}
for shape, queries in json.load(open(qfile)):
    lat, matches = [], 0
    for q in queries:
        t = time.perf_counter()
        _, n = run(q)
        lat.append(time.perf_counter() - t)
        matches += n
    lat.sort()
    shapes[shape] = {"p50": lat[len(lat) // 2], "p99": lat[int(round((len(lat) - 1) * 0.99))],
                     "mean": sum(lat) / len(lat), "matches": matches}
print(json.dumps({"bytes": os.path.getsize(db), "shapes": shapes, "version": sqlite3.sqlite_version}))
