"""In-run peer for B2: SQLite FTS5 indexing the same search documents Cordon indexes.

usage: sqlite_fts.py DOCS_TSV OUT_DIR -> one JSON line: {"wall": s, "cpu": s, "docs": n}
DOCS_TSV has one document a line: host, kind, user, ips, hashes, domains, text, time (tab-separated),
written by cordon-bench from the same events (the time is not indexed here). Only the indexing is timed (load excluded).
"""
import json, os, sqlite3, sys, time

src, out_dir = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    docs = [line.rstrip("\n").split("\t")[:7] for line in f]
db = os.path.join(out_dir, "fts.db")
if os.path.exists(db):
    os.remove(db)
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE VIRTUAL TABLE ev USING fts5(host, kind, user, ips, hashes, domains, text)")
wall, cpu = time.perf_counter(), time.process_time()
con.executemany("INSERT INTO ev VALUES (?,?,?,?,?,?,?)", docs)
con.commit()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "docs": len(docs), "version": sqlite3.sqlite_version}))
