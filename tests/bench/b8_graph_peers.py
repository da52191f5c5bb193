"""In-run peers for B8: the same edge list and the same 1,000 two-hop queries in networkx and in a
DuckDB recursive CTE. Each answer is the number of distinct nodes reached within two directed hops,
the start excluded, as Cordon's `Graph::hops_out(start, 2)` counts them.

usage: b8_graph_peers.py EDGES.csv QUERIES.txt -> one JSON object on stdout
"""
import csv, json, sys, time
import duckdb
import networkx as nx

edges_path, queries_path = sys.argv[1], sys.argv[2]
queries = [int(x) for x in open(queries_path).read().split()]


def pcts(lat):
    lat = sorted(lat)
    at = lambda p: lat[round((len(lat) - 1) * p)]
    return {"p50_us": at(0.5), "p99_us": at(0.99), "max_us": lat[-1]}


out = {}

t = time.perf_counter()
g = nx.DiGraph()
with open(edges_path) as f:
    r = csv.reader(f)
    next(r)
    g.add_edges_from((int(a), int(b)) for a, b in r)
load = time.perf_counter() - t
lat, counts = [], []
for q in queries:
    t = time.perf_counter()
    n = len(nx.single_source_shortest_path_length(g, q, cutoff=2)) - 1 if q in g else 0
    lat.append((time.perf_counter() - t) * 1e6)
    counts.append(n)
out["networkx"] = {"version": nx.__version__, "load_s": load, "counts": counts, **pcts(lat)}
del g

con = duckdb.connect()
con.execute("SET threads=2")
t = time.perf_counter()
con.execute(f"CREATE TABLE edges AS SELECT src::BIGINT AS src, dst::BIGINT AS dst FROM read_csv('{edges_path}', header=true)")
con.execute("CREATE INDEX edges_src ON edges (src)")
load = time.perf_counter() - t
sql = (
    "WITH RECURSIVE r(n, d) AS (SELECT ?::BIGINT, 0 UNION SELECT e.dst, r.d + 1 FROM r JOIN edges e ON e.src = r.n "
    "WHERE r.d < 2) SELECT count(DISTINCT n) - 1 FROM r"
)
lat, counts = [], []
for q in queries:
    t = time.perf_counter()
    n = con.execute(sql, [q]).fetchone()[0]
    lat.append((time.perf_counter() - t) * 1e6)
    counts.append(n)
out["duckdb"] = {"version": duckdb.__version__, "load_s": load, "counts": counts, **pcts(lat)}
print(json.dumps(out))
