"""Pieces shared by the benchmark scripts in Tools/ (bench_hnsw.py, bench_ivf.py, bench_pca.py, bench_scale.py,
bench_bm25.py): fvecs/ivecs reading, recall@k, best-of-N timing, table cell formatting, and the replacement of
one marked section of BENCHMARKS.md. Standard library only (numpy is imported by the readers when called).
"""
import sys
import time


def fvecs(path):
    """An fvecs file (per row an int32 dimension, then that many float32) as an n × d float32 array."""
    import numpy as np
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def ivecs(path):
    """An ivecs file (per row an int32 count, then that many int32) as an n × d int32 array."""
    import numpy as np
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy()


def load_run(args):
    """(base, queries, truth) of a peer run: args.base and args.queries as fvecs, the queries cut to
    args.max_queries when given, and args.groundtruth's rows for those queries."""
    base = fvecs(args.base)
    queries = fvecs(args.queries)
    if args.max_queries:
        queries = queries[: args.max_queries]
    return base, queries, ivecs(args.groundtruth)[: len(queries)]


def recall_at(labels, truth, k=10):
    """Mean share of each row's first k ground-truth ids found among its first k labels."""
    hits = 0
    for row, want in zip(labels, truth):
        hits += len(set(row[:k].tolist()) & set(want[:k].tolist()))
    return hits / (k * len(labels))


def best_of(runs, fn):
    """(fastest of `runs` calls of fn in seconds, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def fmt(x, digits=0):
    """A table cell: "–" for None, a float with thousands separators and `digits` decimals, an int as is."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def ratio(a, b):
    """a / b as "1.23×", or "–" when either is missing or zero."""
    return f"{a / b:.2f}×" if a and b else "–"


def publish(args, name, heading, text, intro=""):
    """Prints a report's `text`; with args.write, replaces its `name` section of that file: the `heading`
    line, the args.command that produced it, `intro` when given, then the text."""
    print(text)
    if args.write:
        section = (f"<!-- {name}:begin -->\n{heading}\n\nCommand: `{args.command}`\n\n"
                   + (intro + "\n\n" if intro else "") + text + f"\n<!-- {name}:end -->")
        write_section(args.write, name, section)


def write_section(path, name, section):
    """Replaces the text from `<!-- NAME:begin -->` through `<!-- NAME:end -->` of the file at `path` with
    `section` (which carries both markers); appends it when the markers are absent, and starts a new file
    with "# Benchmarks" when there is none."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Benchmarks\n"
    b, e = doc.find(begin), doc.find(end)
    if b >= 0 and e > b:
        doc = doc[:b] + section + doc[e + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(doc)
    print(f"wrote the {name} section of {path}", file=sys.stderr)
