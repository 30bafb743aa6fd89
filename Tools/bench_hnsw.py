#!/usr/bin/env python3
"""HNSW benchmark peers and report.

  bench_hnsw.py peers  --dataset NAME --base B.fvecs --queries Q.fvecs --groundtruth G.ivecs --metric l2|cosine
                       [--jsonl base.jsonl] [--efs 10,16,...] [--m 16] [--ef-construction 200] --out peers.json
      hnswlib and FAISS IndexHNSWFlat with the same M / efConstruction: build time on 1 thread and on all,
      save + load + first query, recall@10 and QPS per ef (one batched call per ef, 1 thread and all),
      and (with --jsonl) hnswlib with a filter function on metadata.source.

  bench_hnsw.py traversal-peer --dataset NAME --base B.fvecs --queries Q.fvecs --groundtruth G.ivecs
                       --metric l2|cosine [--efs ...] --out hnswlib-traversal.json
      hnswlib with one knn_query call per query on one thread (as vecstore's `hnsw-traversal` run), and the
      size of its saved index.

  bench_hnsw.py traversal-report VECSTORE.json PEER.json... [--write BENCHMARKS.md --command "..."]
      The binary16-against-int8 traversal table (recall@10, QPS per ef, store sizes) beside hnswlib;
      --write replaces the section between <!-- hnsw-traversal:begin --> and <!-- hnsw-traversal:end -->.

  bench_hnsw.py report RESULT.json... [--write BENCHMARKS.md --command "..."] [--plot-dir plots]
      Tables from vecstore-bench hnsw and peers results; --write replaces the section between
      <!-- hnsw:begin --> and <!-- hnsw:end --> (appended at the end when absent). --plot-dir writes
      PLOT_DIR/hnsw-<dataset>.svg (recall@10 against queries/s by ef, every system) and embeds it.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402
from benchlib import best_of, fmt, load_run, ratio, recall_at, publish  # noqa: E402


def peers(args):
    import numpy as np
    import hnswlib
    import faiss

    base, queries, truth = load_run(args)
    n, dim = base.shape
    cores = os.cpu_count() or 1
    efs = [int(x) for x in args.efs.split(",")]
    if args.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    space = "l2" if args.metric == "l2" else "ip"
    results = []

    # ---------------- hnswlib
    def build_hnswlib(threads):
        idx = hnswlib.Index(space=space, dim=dim)
        idx.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=100)
        t = time.perf_counter()
        idx.add_items(base, np.arange(n), num_threads=threads)
        return idx, time.perf_counter() - t

    m = {"threads_all": cores}
    if not args.skip_serial_build:
        _, m["build_s_1t"] = build_hnswlib(1)
        print(f"hnswlib {args.dataset}: build 1 thread {m['build_s_1t']:.1f} s", file=sys.stderr)
    idx, m["build_s_all"] = build_hnswlib(cores)
    print(f"hnswlib {args.dataset}: build {cores} threads {m['build_s_all']:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.bin")
        idx.save_index(path)
        m["index_bytes"] = os.path.getsize(path)
        t = time.perf_counter()
        loaded = hnswlib.Index(space=space, dim=dim)
        loaded.load_index(path, max_elements=n)
        loaded.set_ef(64)
        loaded.knn_query(queries[:1], k=10, num_threads=1)
        m["open_first_query_ms"] = (time.perf_counter() - t) * 1000
        del loaded
    curve = []
    for ef in efs:
        idx.set_ef(ef)
        s1, (labels, _) = best_of(args.runs, lambda: idx.knn_query(queries, k=10, num_threads=1))
        sa, _ = best_of(args.runs, lambda: idx.knn_query(queries, k=10, num_threads=cores))
        r = recall_at(labels, truth)
        curve.append({"ef": ef, "recall": r, "qps_1t": len(queries) / s1, "qps_all": len(queries) / sa})
        print(f"hnswlib {args.dataset} ef={ef}: recall {r:.4f} 1t {len(queries)/s1:.0f} q/s all {len(queries)/sa:.0f} q/s",
              file=sys.stderr)
    m["curve"] = curve
    if args.jsonl:
        sources = []
        with open(args.jsonl) as f:
            for line in f:
                sources.append(json.loads(line).get("metadata", {}).get("source"))
        sources = np.array(sources)
        filtered = []
        idx.set_ef(args.filter_ef)
        for src in ["linux", "python", "sphinx"]:
            allowed = sources == src
            rows = np.nonzero(allowed)[0]
            sub = base[rows]
            if space == "l2":
                d = ((queries[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
                exact = rows[np.argsort(d, axis=1)[:, :10]]
            else:
                exact = rows[np.argsort(-(queries @ sub.T), axis=1)[:, :10]]
            allowed_list = allowed.tolist()
            fn = lambda label: allowed_list[label]
            s, (labels, _) = best_of(1, lambda: idx.knn_query(queries, k=10, num_threads=1, filter=fn))
            r = recall_at(labels, exact)
            filtered.append({"source": src, "selectivity": float(allowed.mean()), "recall": r,
                             "qps_1t": len(queries) / s})
            print(f"hnswlib {args.dataset} filter {src}: recall {r:.4f} {len(queries)/s:.0f} q/s", file=sys.stderr)
        m["filtered"] = filtered
        m["filter_ef"] = args.filter_ef
    m["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results.append({"system": "hnswlib", "dataset": args.dataset, "n": int(n), "dim": int(dim),
                    "metric": args.metric, "metrics": m})
    del idx

    # ---------------- FAISS IndexHNSWFlat
    fm = {"threads_all": cores}
    faiss_metric = faiss.METRIC_L2 if space == "l2" else faiss.METRIC_INNER_PRODUCT

    def build_faiss(threads):
        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(dim, args.m, faiss_metric)
        index.hnsw.efConstruction = args.ef_construction
        t = time.perf_counter()
        index.add(base)
        return index, time.perf_counter() - t

    if not args.skip_serial_build:
        _, fm["build_s_1t"] = build_faiss(1)
        print(f"faiss {args.dataset}: build 1 thread {fm['build_s_1t']:.1f} s", file=sys.stderr)
    index, fm["build_s_all"] = build_faiss(cores)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        fm["index_bytes"] = os.path.getsize(path)
        t = time.perf_counter()
        loaded = faiss.read_index(path)
        loaded.hnsw.efSearch = 64
        loaded.search(queries[:1], 10)
        fm["open_first_query_ms"] = (time.perf_counter() - t) * 1000
        del loaded
    curve = []
    for ef in efs:
        index.hnsw.efSearch = max(ef, 10)
        faiss.omp_set_num_threads(1)
        s1, (_, labels) = best_of(args.runs, lambda: index.search(queries, 10))
        faiss.omp_set_num_threads(cores)
        sa, _ = best_of(args.runs, lambda: index.search(queries, 10))
        r = recall_at(labels, truth)
        curve.append({"ef": ef, "recall": r, "qps_1t": len(queries) / s1, "qps_all": len(queries) / sa})
        print(f"faiss {args.dataset} ef={ef}: recall {r:.4f} 1t {len(queries)/s1:.0f} q/s", file=sys.stderr)
    fm["curve"] = curve
    results.append({"system": "faiss-hnsw", "dataset": args.dataset, "n": int(n), "dim": int(dim),
                    "metric": args.metric, "metrics": fm})
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


# ------------------------------------------------------------------------------ traversal copies

def traversal_peer(args):
    import numpy as np
    import hnswlib

    base, queries, truth = load_run(args)
    n, dim = base.shape
    if args.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    idx = hnswlib.Index(space="l2" if args.metric == "l2" else "ip", dim=dim)
    idx.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=100)
    idx.add_items(base, np.arange(n), num_threads=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.bin")
        idx.save_index(path)
        size = os.path.getsize(path)
    rows = [queries[i: i + 1] for i in range(len(queries))]
    curve = []
    for ef in [int(x) for x in args.efs.split(",")]:
        idx.set_ef(ef)

        def one_by_one():
            return np.vstack([idx.knn_query(q, k=10, num_threads=1)[0] for q in rows])
        sec, labels = best_of(args.runs, one_by_one)
        r = recall_at(labels, truth)
        curve.append({"ef": ef, "recall": r, "qps_1t": len(queries) / sec})
        print(f"hnswlib {args.dataset} ef={ef}: recall {r:.4f} {len(queries)/sec:.0f} q/s (one query per call)",
              file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"system": "hnswlib", "dataset": args.dataset, "n": int(n), "dim": int(dim), "metric": args.metric,
                   "metrics": {"index_bytes": size, "curve": curve}}, f, indent=1)


def traversal_report(args):
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(json.load(f))
    datasets = []
    for r in runs:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    out = []
    w = out.append
    w("One thread, one `search` call per query (hnswlib: one `knn_query` call per query), k = 10, M = 16, "
      "efConstruction = 200; both vecstore graphs built by `index build` over the same imported rows (the "
      "int8 quantizer trained on all of them). Ratios are int8 / f16 and int8 / hnswlib. The graphs are "
      "linked on all cores, so each build differs a little: on siftsmall's 100 queries recall@10 at a given ef "
      "moves by up to ±0.005 from build to build, for either traversal. docs60k-l2 is docs60k's unit vectors "
      "in an l2 collection (same neighbours, same ground truth).")
    w("")
    for ds in datasets:
        v = next((r for r in runs if r["dataset"] == ds and r["system"] == "vecstore"), None)
        h = next((r for r in runs if r["dataset"] == ds and r["system"] == "hnswlib"), None)
        if not v:
            continue
        var = {x["traversal"]: x for x in v["metrics"]["variants"]}
        f16, i8 = var.get("f16"), var.get("int8")
        w(f"#### {ds} ({v['n']:,} × {v['dim']}, {v['metric']})")
        w("")
        w("| ef | f16 recall | f16 QPS | int8 recall | int8 QPS | int8/f16 QPS | hnswlib recall | hnswlib QPS | int8/hnswlib QPS |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

        def point(curve, ef):
            return next((p for p in curve if p["ef"] == ef), None) if curve else None
        efs = sorted({p["ef"] for x in (f16, i8) if x for p in x["curve"]})
        for ef in efs:
            a, b = point(f16 and f16["curve"], ef), point(i8 and i8["curve"], ef)
            c = point(h and h["metrics"]["curve"], ef)
            w(f"| {ef} | {fmt(a and float(a['recall']), 4)} | {fmt(a and a['qps_1t'])} | {fmt(b and float(b['recall']), 4)} | "
              f"{fmt(b and b['qps_1t'])} | {ratio(b and b['qps_1t'], a and a['qps_1t'])} | {fmt(c and float(c['recall']), 4)} | "
              f"{fmt(c and c['qps_1t'])} | {ratio(b and b['qps_1t'], c and c['qps_1t'])} |")
        w("")
        raw = v["n"] * v["dim"] * 4
        w("| | vecstore f16 | vecstore int8 | hnswlib |")
        w("|---|---:|---:|---:|")
        w(f"| traversal copies, `graph-vectors` pages (MB; % of raw float32 {raw / 1e6:.1f} MB) | "
          f"{f16['copies_bytes'] / 1e6:.1f} ({100 * f16['copies_bytes'] / raw:.0f}%) | "
          f"{i8['copies_bytes'] / 1e6:.1f} ({100 * i8['copies_bytes'] / raw:.0f}%) | – |")
        w(f"| store pages in use (MB; hnswlib: saved index) | {f16['store_used_bytes'] / 1e6:.1f} | "
          f"{i8['store_used_bytes'] / 1e6:.1f} | {fmt(h and h['metrics']['index_bytes'] / 1e6, 1)} |")
        w(f"| build, all cores (s) | {f16['build_s_all']:.1f} | {i8['build_s_all']:.1f} | – |")
        w(f"| verify clean | {f16['verify_ok']} | {i8['verify_ok']} | – |")
        w("")
    text = "\n".join(out)
    publish(args, "hnsw-traversal", "### HNSW traversal copies: binary16 against int8", text)


# ------------------------------------------------------------------------------------------- report

def qps_at(curve, target, key="qps_1t"):
    ok = [p[key] for p in curve if p["recall"] >= target]
    return max(ok) if ok else None


def plot_curves(ds, any_run, v, h, fa, plot_dir):
    """Writes PLOT_DIR/hnsw-<ds>.svg (recall@10 against QPS, one curve per system and mode) and returns
    the markdown image line."""
    def curve(run, key, label_ef=False):
        if not run:
            return []
        pts = sorted(run["metrics"]["curve"], key=lambda p: p["ef"])
        return [(p["recall"], p.get(key), f"ef {p['ef']}" if label_ef else None) for p in pts if p.get(key)]
    threads = any_run["metrics"].get("threads_all", "all")
    series = [
        {"name": "vecstore 1 thread", "points": curve(v, "qps_1t", label_ef=True)},
        {"name": f"vecstore {threads} threads", "points": curve(v, "qps_all")},
        {"name": "hnswlib 1 thread", "points": curve(h, "qps_1t"), "dashed": True},
        {"name": f"hnswlib {threads} threads", "points": curve(h, "qps_all"), "dashed": True},
        {"name": "FAISS HNSW 1 thread", "points": curve(fa, "qps_1t"), "dashed": True},
    ]
    name = f"hnsw-{ds}.svg"
    svgplot.write(os.path.join(plot_dir, name), svgplot.chart(
        [s for s in series if s["points"]], title=f"{ds}: HNSW recall@10 vs queries/s",
        subtitle=f"{any_run['n']:,} × {any_run['dim']}, {any_run['metric']}; M=16, efConstruction=200; "
                 "one point per ef (10 … 256)",
        x_label="recall@10", y_label="queries/s", log_y=True))
    return f"![{ds}: HNSW recall@10 against queries/s for vecstore, hnswlib and FAISS]({os.path.basename(plot_dir)}/{name})"


def report(args):
    runs = []
    for path in args.results:
        with open(path) as f:
            doc = json.load(f)
        runs.extend(doc if isinstance(doc, list) else [doc])
    datasets = []
    for r in runs:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    out = []
    w = out.append
    for ds in datasets:
        by = {r["system"]: r for r in runs if r["dataset"] == ds}
        v = by.get("vecstore")
        h = by.get("hnswlib")
        fa = by.get("faiss-hnsw")
        any_run = v or h or fa
        w(f"### {ds} ({any_run['n']:,} × {any_run['dim']}, {any_run['metric']}; M=16, efConstruction=200)")
        w("")
        w("Recall@10 and queries per second by ef. vecstore: one `search` call per query (1t) and "
          "`searchBatch` on all cores (all); hnswlib / FAISS: one batched call with 1 thread (1t) and all threads.")
        w("")
        w("| ef | vecstore recall | vecstore QPS 1t | vecstore QPS batch 1t | vecstore QPS all | hnswlib recall | hnswlib QPS 1t | hnswlib QPS all | FAISS recall | FAISS QPS 1t |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        efs = []
        for s in (v, h, fa):
            if s:
                for p in s["metrics"]["curve"]:
                    if p["ef"] not in efs:
                        efs.append(p["ef"])
        def point(s, ef):
            if not s:
                return None
            for p in s["metrics"]["curve"]:
                if p["ef"] == ef:
                    return p
            return None
        for ef in sorted(efs):
            pv, ph, pf = point(v, ef), point(h, ef), point(fa, ef)
            w(f"| {ef} | {fmt(pv and pv['recall'], 4)} | {fmt(pv and pv['qps_1t'])} | {fmt(pv and pv.get('qps_batch_1t'))} | "
              f"{fmt(pv and pv['qps_all'])} | {fmt(ph and ph['recall'], 4)} | {fmt(ph and ph['qps_1t'])} | "
              f"{fmt(ph and ph['qps_all'])} | {fmt(pf and pf['recall'], 4)} | {fmt(pf and pf['qps_1t'])} |")
        w("")
        if args.plot_dir:
            w(plot_curves(ds, any_run, v, h, fa, args.plot_dir))
            w("")
        w("Best QPS among the ef values reaching a recall (ratio = vecstore / hnswlib):")
        w("")
        w("| recall ≥ | vecstore 1t | vecstore batch 1t | hnswlib 1t | ratio 1t | vecstore all | hnswlib all | ratio all | FAISS 1t |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target in (0.90, 0.95, 0.99):
            v1 = v and qps_at(v["metrics"]["curve"], target)
            vb = v and qps_at(v["metrics"]["curve"], target, "qps_batch_1t")
            va = v and qps_at(v["metrics"]["curve"], target, "qps_all")
            h1 = h and qps_at(h["metrics"]["curve"], target)
            ha = h and qps_at(h["metrics"]["curve"], target, "qps_all")
            f1 = fa and qps_at(fa["metrics"]["curve"], target)
            w(f"| {target:.2f} | {fmt(v1)} | {fmt(vb)} | {fmt(h1)} | {ratio(v1, h1)} | {fmt(va)} | {fmt(ha)} | {ratio(va, ha)} | {fmt(f1)} |")
        w("")
        w("| | vecstore | hnswlib | FAISS HNSWFlat |")
        w("|---|---:|---:|---:|")
        def g(s, key, scale=1.0, digits=1):
            if not s or s["metrics"].get(key) is None:
                return "–"
            return fmt(s["metrics"][key] * scale, digits)
        w(f"| build, 1 thread (s) | {g(v, 'build_s_1t')} | {g(h, 'build_s_1t')} | {g(fa, 'build_s_1t')} |")
        w(f"| build, all {any_run['metrics'].get('threads_all', '')} threads (s) | {g(v, 'build_s_all')} | {g(h, 'build_s_all')} | {g(fa, 'build_s_all')} |")
        w(f"| open + first query (ms) | {g(v, 'open_first_query_ms')} | {g(h, 'open_first_query_ms')} | {g(fa, 'open_first_query_ms')} |")
        if v:
            vm = v["metrics"]
            used = vm.get("store_used_bytes")
            dbb = vm.get("db_bytes", {})
            parts = ", ".join(f"{k} {dbb[k] / 1e6:.1f}" for k in ("vectors", "graph-vectors", "graph", "graph-upper", "docs")
                              if k in dbb)
            w(f"| store file / pages in use (MB) | {fmt(vm['store_bytes'] / 1e6, 1)} / {fmt(used and used / 1e6, 1)} "
              f"(raw vectors {fmt(vm['raw_bytes'] / 1e6, 1)}; {parts}) | "
              f"{g(h, 'index_bytes', 1e-6)} | {g(fa, 'index_bytes', 1e-6)} |")
            w(f"| peak RSS of the benchmark process (MB) | {g(v, 'peak_rss_bytes', 1e-6, 0)} | {g(h, 'peak_rss_bytes', 1e-6, 0)} (both peers) | |")
        w("")
        if v and "incremental_recall" in v["metrics"]:
            vm = v["metrics"]
            ef95 = vm.get("ef_for_095")
            bulk = point(v, ef95)
            w(f"Updates (vecstore, at ef={ef95}, the smallest ef with recall ≥ 0.95 on the bulk-built store):")
            w("")
            w("| | value |")
            w("|---|---:|")
            w(f"| recall@10, bulk build | {fmt(bulk and bulk['recall'], 4)} |")
            w(f"| recall@10, 90% bulk + 10% added in batches of 100 | {fmt(vm['incremental_recall'], 4)} |")
            w(f"| incremental adds/s (batches of 100, one transaction each) | {fmt(vm['incremental_adds_per_s'])} |")
            w(f"| deletes/s (batches of 1,000, with neighbour repair) | {fmt(vm['deletes_per_s'])} |")
            w(f"| recall@10 vs exact after deleting a random 20% | {fmt(vm['delete_recall'], 4)} |")
            w(f"| recall@10 vs exact after compaction | {fmt(vm['compact_recall'], 4)} |")
            w(f"| compaction, graph carried over (s) | {fmt(vm['compact_s'], 1)} |")
            w(f"| verify clean after adds / deletes / compaction | {vm.get('incremental_verify_ok')} / {vm.get('delete_verify_ok')} / {vm.get('compact_verify_ok')} |")
            w("")
        if v and "filtered" in v["metrics"]:
            hf = {x["source"]: x for x in (h["metrics"].get("filtered", []) if h else [])}
            w(f"Filtered by `metadata.source` (recall@10 vs exact filtered search, 1 thread; vecstore at its default "
              f"ef=64 with the automatic graph/exact switch; hnswlib at ef={h['metrics'].get('filter_ef') if h else '–'} "
              "with a Python filter function):")
            w("")
            w("| source | selectivity | vecstore auto path | recall | QPS | vecstore graph-only recall | QPS | vecstore exact QPS | hnswlib recall | hnswlib QPS |")
            w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
            for x in v["metrics"]["filtered"]:
                hx = hf.get(x["source"], {})
                w(f"| {x['source']} | {x['selectivity'] * 100:.1f}% | {x.get('path', '')} | {fmt(x['recall'], 4)} | {fmt(x['qps_1t'])} | "
                  f"{fmt(x.get('graph_recall'), 4)} | {fmt(x.get('graph_qps_1t'))} | "
                  f"{fmt(x.get('exact_qps_1t'))} | {fmt(hx.get('recall'), 4)} | {fmt(hx.get('qps_1t'))} |")
            w("")
    text = "\n".join(out)
    publish(args, "hnsw", "## HNSW", text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peers")
    p.add_argument("--dataset", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--groundtruth", required=True)
    p.add_argument("--metric", required=True, choices=["l2", "cosine"])
    p.add_argument("--jsonl")
    p.add_argument("--efs", default="10,16,32,64,128,256")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--filter-ef", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-queries", type=int)
    p.add_argument("--skip-serial-build", action="store_true")
    p.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("results", nargs="+")
    r.add_argument("--write")
    r.add_argument("--command", default="Tools/bench-hnsw")
    r.add_argument("--plot-dir", help="write hnsw-<dataset>.svg here and embed it in the tables")
    t = sub.add_parser("traversal-peer")
    t.add_argument("--dataset", required=True)
    t.add_argument("--base", required=True)
    t.add_argument("--queries", required=True)
    t.add_argument("--groundtruth", required=True)
    t.add_argument("--metric", required=True, choices=["l2", "cosine"])
    t.add_argument("--efs", default="10,16,32,64,128,256")
    t.add_argument("--m", type=int, default=16)
    t.add_argument("--ef-construction", type=int, default=200)
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--max-queries", type=int)
    t.add_argument("--out", required=True)
    tr = sub.add_parser("traversal-report")
    tr.add_argument("results", nargs="+")
    tr.add_argument("--write")
    tr.add_argument("--command", default="Tools/bench-hnsw --traversal")
    args = ap.parse_args()
    {"peers": peers, "report": report, "traversal-peer": traversal_peer,
     "traversal-report": traversal_report}[args.cmd](args)


if __name__ == "__main__":
    main()
