"""In-run peer for B1: DuckDB NDJSON -> Parquet (zstd 1), rows sorted by (host, time) like Cordon's.

usage: duckdb_ingest.py NDJSON OUT_DIR   -> one JSON line: {"wall": s, "cpu": s, "rows": n, "bytes": n}
"""
import json, os, sys, time
import duckdb

src, out_dir = sys.argv[1], sys.argv[2]
out = os.path.join(out_dir, "duck.parquet")
con = duckdb.connect()
con.execute("SET threads=2")
wall, cpu = time.perf_counter(), time.process_time()
con.execute(
    f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited', sample_size=-1) "
    f"ORDER BY host.name, \"@timestamp\") TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)"
)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(json.dumps({"wall": wall, "cpu": cpu, "rows": rows, "bytes": os.path.getsize(out), "version": duckdb.__version__}))
