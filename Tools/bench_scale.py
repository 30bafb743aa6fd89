"""hnswlib side of Tools/bench-scale, and the report that sets both sides next to each other.

    python Tools/bench_scale.py hnswlib --data DIR --json OUT [--threads 2] [--efs 16,32,64,128]
    python Tools/bench_scale.py faiss-flat --data DIR --json OUT [--max-queries 100]
    python Tools/bench_scale.py report VECSTORE_JSON... --peer HNSWLIB_JSON [--flat FAISS_FLAT_JSON]
"""
import argparse, json, os, resource, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import fvecs, ivecs  # noqa: E402

def anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0

def run_hnswlib(a):
    import hnswlib, numpy as np, threading
    base = fvecs(os.path.join(a.data, "base.fvecs"))
    queries = fvecs(os.path.join(a.data, "queries.fvecs"))[: a.max_queries]
    truth = ivecs(os.path.join(a.data, "groundtruth.ivecs"))
    anon_before = anon_kb()
    peak = [anon_before]
    stop = [False]
    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], anon_kb()); time.sleep(0.05)
    t = threading.Thread(target=sample); t.start()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], M=16, ef_construction=200, random_seed=100)
    c0 = time.process_time(); t0 = time.time()
    index.add_items(base, num_threads=a.threads)
    build = time.time() - t0; cpu = time.process_time() - c0
    stop[0] = True; t.join()
    out = {"system": "hnswlib", "n": int(base.shape[0]), "threads": a.threads, "build_s": build,
           "build_cpu_pct": 100 * cpu / build, "build_peak_anon_bytes": peak[0] * 1024,
           "build_anon_growth_bytes": (peak[0] - anon_before) * 1024, "curve": []}
    print(f"hnswlib: add_items {base.shape[0]} rows on {a.threads} threads {build:.1f} s ({100 * cpu / build:.0f}% CPU), "
          f"peak anon {peak[0] / 1024:.0f} MB (vectors loaded by numpy: {base.nbytes / 1e6:.0f} MB)")
    index.set_num_threads(1)
    for ef in [int(x) for x in a.efs.split(",")]:
        index.set_ef(ef)
        best = 1e9
        for _ in range(2):
            t0 = time.time()
            labels = [index.knn_query(q.reshape(1, -1), k=10)[0][0] for q in queries]
            best = min(best, time.time() - t0)
        recall = sum(len(set(l) & set(truth[i][:10])) for i, l in enumerate(labels)) / (10 * len(queries))
        out["curve"].append({"ef": ef, "recall": recall, "qps_1t": len(queries) / best})
        print(f"hnswlib ef={ef}: recall@10 {recall:.4f}, {len(queries) / best:.0f} q/s (1 thread)")
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)

def run_faiss_flat(a):
    """FAISS IndexFlatIP, one thread, one query per call: the exact-search peer of the `exact` phase."""
    import faiss, numpy as np
    faiss.omp_set_num_threads(1)
    base = fvecs(os.path.join(a.data, "base.fvecs"))
    queries = np.ascontiguousarray(fvecs(os.path.join(a.data, "queries.fvecs"))[: a.max_queries])
    truth = ivecs(os.path.join(a.data, "groundtruth.ivecs"))
    t0 = time.time()
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    index.search(queries[:1], 10)
    first = (time.time() - t0) * 1000
    best = 1e9
    for _ in range(2):
        t0 = time.time()
        labels = [index.search(q.reshape(1, -1), 10)[1][0] for q in queries]
        best = min(best, time.time() - t0)
    recall = sum(len(set(l) & set(truth[i][:10])) for i, l in enumerate(labels)) / (10 * len(queries))
    out = {"system": "faiss IndexFlatIP", "version": faiss.__version__, "n": int(base.shape[0]),
           "qps_1t": len(queries) / best, "recall": recall, "add_first_query_ms": first}
    print(f"faiss IndexFlatIP ({faiss.__version__}): {len(queries) / best:.1f} q/s single-query 1 thread, "
          f"recall@10 {recall:.4f}; add + first query {first:.0f} ms (vectors already in RAM)")
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)

def qps_at(curve, target):
    """QPS at a recall target, interpolated linearly between measured points (None if never reached)."""
    pts = sorted((p["recall"], p["qps_1t"]) for p in curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            return q0 + (q1 - q0) * (target - r0) / (r1 - r0) if r1 > r0 else q1
    return pts[0][1] if pts and pts[0][0] >= target else None

def report(a):
    vs = {}
    for p in a.vecstore:
        with open(p) as f:
            vs.update(json.load(f)["metrics"])
    with open(a.peer) as f:
        peer = json.load(f)
    gb = lambda b: f"{b / 1e9:.2f} GB"
    print(f"| | vecstore | hnswlib | ratio |")
    print(f"|---|---:|---:|---:|")
    if "import_s" in vs:
        print(f"| build/import, {vs['threads']} threads | {vs['import_s']:.0f} s ({vs['import_cpu_pct']:.0f}% CPU) "
              f"| {peer['build_s']:.0f} s ({peer['build_cpu_pct']:.0f}% CPU) | {peer['build_s'] / vs['import_s']:.2f}x |")
        print(f"| peak anonymous memory | {vs['import_peak_anon_bytes'] / 1e6:.0f} MB | {peer['build_peak_anon_bytes'] / 1e6:.0f} MB "
              f"| {vs['import_peak_anon_bytes'] / peer['build_peak_anon_bytes']:.2f}x |")
        print(f"| per-row cost, last 10% / first 10% of batches | {vs['last10_us_per_row']:.0f} / {vs['first10_us_per_row']:.0f} us "
              f"({vs['last10_us_per_row'] / vs['first10_us_per_row']:.2f}x) | | |")
        print(f"| store size / raw vectors | {gb(vs['store_bytes'])} / {gb(vs['raw_vector_bytes'])} "
              f"({vs['store_bytes'] / vs['raw_vector_bytes']:.2f}x) | | |")
        print(f"| free pages after import | {vs['free_pages']} of {vs['used_pages']} ({100 * vs['free_pages'] / vs['used_pages']:.1f}%) | | |")
        print(f"| bytes written by the import | {gb(vs['import_write_bytes'])} ({vs['import_write_bytes'] / vs['store_bytes']:.2f}x the store) | | |")
    if "curve" in vs:
        for target in (0.90, 0.95, 0.99):
            a_ = qps_at(vs["curve"], target); b_ = qps_at(peer["curve"], target)
            fmt = lambda x: f"{x:.0f}" if x else "not reached"
            ratio = f"{a_ / b_:.2f}x" if a_ and b_ else ""
            print(f"| QPS at recall@10 {target:.2f} (1 thread) | {fmt(a_)} | {fmt(b_)} | {ratio} |")
        print(f"| open + first query | {vs['open_first_query_ms']:.1f} ms | | |")
    if "exact_qps_1t" in vs:
        flat = None
        if a.flat:
            with open(a.flat) as f:
                flat = json.load(f)
        fq = f"{flat['qps_1t']:.1f}" if flat else ""
        ratio = f"{vs['exact_qps_1t'] / flat['qps_1t']:.2f}x" if flat else ""
        print(f"| exact search QPS, single query, 1 thread (vs FAISS IndexFlatIP) | {vs['exact_qps_1t']:.1f} "
              f"(p50 {vs['exact_p50_ms']:.1f} ms) | {fq} | {ratio} |")
        print(f"| exact: open + first query / second query | {vs['exact_first_query_ms']:.0f} / "
              f"{vs['exact_second_query_ms']:.0f} ms | | |")
    for mode, o in vs.get("open_by_cache", {}).items():
        # Fresh processes (vecstore-bench open-once); warm = store file read through and confirmed
        # resident with mincore before each run, as-found = the page cache as the machine left it.
        runs = ", ".join(f"{x:.1f}" for x in o["runs_ms"])
        share = min(o["resident_share"]) if o["resident_share"] else 0
        parts = ", ".join(f"{k} {v:.2f}" for k, v in o["parts_median_ms"].items())
        print(f"| fresh process: open + first query, {mode} page cache (>= {100 * share:.0f}% resident; median; runs) "
              f"| {o['median_ms']:.1f} ms ({runs}); parts: {parts} ms | | |")
    if "open_first_query_median_ms" in vs and "open_by_cache" not in vs:
        runs = ", ".join(f"{x:.1f}" for x in vs["open_first_query_runs_ms"])
        print(f"| fresh open + first query, warm page cache (median; runs) | {vs['open_first_query_median_ms']:.1f} ms ({runs}) | | |")
        for src, f_ in vs.get("open_first_filtered", {}).items():
            runs = ", ".join(f"{x:.1f}" for x in f_["runs_ms"])
            print(f"| fresh open + first filtered query, source={src} | {f_['median_ms']:.1f} ms ({runs}) | | |")
    for f_ in vs.get("filtered", []):
        print(f"| filter source={f_['source']} ({100 * f_['share']:.1f}%) | recall {f_['recall']:.3f}, {f_['qps_1t']:.0f} q/s, "
              f"first {f_['first_ms']:.1f} ms | | |")
    if "compact_s" in vs:
        mb = lambda k: f"{vs[k] / 1e6:.0f} MB" if k in vs else "?"
        intact = f"{vs['compact_recall_intact']:.4f} before the deletes, " if "compact_recall_intact" in vs else ""
        print(f"| compact after 1% deletes, graph carried over | {vs['compact_s']:.1f} s, peak anon {mb('compact_peak_anon_bytes')} "
              f"({mb('compact_base_anon_bytes')} before), recall {intact}{vs['compact_recall_before']:.4f} after them "
              f"-> {vs['compact_recall_after']:.4f} compacted | | |")
        if "import_s" in vs:
            print(f"| compact (carried) / import time | {vs['compact_s'] / vs['import_s']:.2f}x | | |")
    if "compact_rebuild_s" in vs:
        print(f"| compact after 1% deletes, graph rebuilt | {vs['compact_rebuild_s']:.1f} s, peak anon "
              f"{vs['compact_rebuild_peak_anon_bytes'] / 1e6:.0f} MB ({vs['compact_rebuild_base_anon_bytes'] / 1e6:.0f} MB before), "
              f"recall {vs['compact_rebuild_recall_before']:.3f} -> {vs['compact_rebuild_recall_after']:.3f} | | |")
        if "compact_s" in vs:
            print(f"| compact carried / rebuilt | {vs['compact_s'] / vs['compact_rebuild_s']:.2f}x time, recall after "
                  f"{vs['compact_recall_after'] - vs['compact_rebuild_recall_after']:+.4f} | | |")

p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
h = sub.add_parser("hnswlib"); h.add_argument("--data", required=True); h.add_argument("--json", required=True)
h.add_argument("--threads", type=int, default=2); h.add_argument("--efs", default="16,32,64,128")
h.add_argument("--max-queries", type=int, default=1000)
ff = sub.add_parser("faiss-flat"); ff.add_argument("--data", required=True); ff.add_argument("--json", required=True)
ff.add_argument("--max-queries", type=int, default=100)
r = sub.add_parser("report"); r.add_argument("vecstore", nargs="+"); r.add_argument("--peer", required=True)
r.add_argument("--flat", help="faiss-flat JSON (exact-search peer)")
a = p.parse_args()
{"hnswlib": run_hnswlib, "faiss-flat": run_faiss_flat, "report": report}[a.cmd](a)
