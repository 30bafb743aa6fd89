#!/usr/bin/env python3
"""IVF / PQ benchmark peers (FAISS) and report, beside `vecstore-bench ivf` (the in-memory core).

  bench_ivf.py peers  --dataset NAME --base B.fvecs --queries Q.fvecs --groundtruth G.ivecs --metric l2|cosine
                      --nlist N --pq-m M --fs-m M --refine R [--nprobes 1,2,...] [--iterations 10] --out peers.json
      faiss.Kmeans training time (same k, iterations, sample cap 256 per centroid, one thread), then
      IndexIVFFlat, IndexIVFPQ (8-bit; residual codes, and raw-vector codes with `by_residual = False`) and
      IndexIVFPQFastScan (4-bit; residual codes, and raw-vector codes as FAISS's default `by_residual = False`)
      + IndexRefineFlat with the same nlist, M,
      nprobe and refine: build time, recall@10 and QPS per nprobe (one batched call, one thread).

  bench_ivf.py report RESULT.json... [--write BENCHMARKS.md --command "..."]
      Side-by-side tables with ratios; --write replaces the section between <!-- ivf:begin --> and
      <!-- ivf:end --> of BENCHMARKS.md (appended when absent).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import best_of, fmt, load_run, ratio, recall_at, publish  # noqa: E402
import svgplot  # noqa: E402


def peers(args):
    import numpy as np
    import faiss

    faiss.omp_set_num_threads(1)
    base, queries, truth = load_run(args)
    n, dim = base.shape
    if args.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    ip = args.metric != "l2"
    fmetric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    nprobes = [p for p in (int(x) for x in args.nprobes.split(",")) if p <= args.nlist]
    m = {"nlist": args.nlist, "pq_m": args.pq_m, "fs_m": args.fs_m, "refine": args.refine,
         "iterations": args.iterations, "faiss_version": faiss.__version__}

    km = faiss.Kmeans(dim, args.nlist, niter=args.iterations, seed=args.seed, max_points_per_centroid=256,
                      spherical=args.metric == "cosine", verbose=False)
    t = time.perf_counter()
    km.train(base)
    m["kmeans_s"] = time.perf_counter() - t
    m["kmeans_mse"] = float(km.obj[-1]) / min(n, args.nlist * 256) if not ip else None
    print(f"faiss {args.dataset}: k-means {m['kmeans_s']:.3f} s", file=sys.stderr)

    def quantizer():
        return faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)

    def make(kind):
        if kind == "flat":
            q = quantizer()
            return faiss.IndexIVFFlat(q, dim, args.nlist, fmetric), q, None
        if kind in ("pq8", "pq8_raw"):
            q = quantizer()
            index = faiss.IndexIVFPQ(q, dim, args.nlist, args.pq_m, 8, fmetric)
            # IndexIVFPQ codes residuals by default; "pq8_raw" codes the raw vectors on both sides.
            index.by_residual = kind == "pq8"
            return index, q, None
        q = quantizer()
        inner = faiss.IndexIVFPQFastScan(q, dim, args.nlist, args.fs_m, 4, fmetric)
        # FAISS (1.15) defaults fast scan to codes of the raw vectors (by_residual False: one table per query),
        # measured against the store's raw-vector coding ("fastscan_raw"); "fastscan" codes residuals against
        # the list centroid on both sides, as IndexIVFPQ does.
        inner.by_residual = kind == "fastscan"
        return faiss.IndexRefineFlat(inner), q, inner

    for kind in [k for k in ("flat", "pq8", "pq8_raw", "fastscan", "fastscan_raw") if k in args.kinds.split(",")]:
        index, q, inner = make(kind)
        ivf = inner if inner is not None else index
        ivf.cp.niter = args.iterations
        ivf.cp.seed = args.seed
        t = time.perf_counter()
        index.train(base)
        index.add(base)
        build = time.perf_counter() - t
        curve = []
        for nprobe in nprobes:
            ivf.nprobe = nprobe
            if kind.startswith("fastscan"):
                params = faiss.IndexRefineSearchParameters(k_factor=args.refine,
                                                          base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
                s, (_, labels) = best_of(args.runs, lambda: index.search(queries, 10, params=params))
            else:
                s, (_, labels) = best_of(args.runs, lambda: index.search(queries, 10))
            r = recall_at(labels, truth)
            curve.append({"nprobe": nprobe, "recall": r, "qps_1t": len(queries) / s})
            print(f"faiss {args.dataset} {kind} nprobe={nprobe}: recall {r:.4f} {len(queries) / s:.0f} q/s", file=sys.stderr)
        code = dim * 4 if kind == "flat" else (args.pq_m if kind.startswith("pq8") else (args.fs_m + 1) // 2)
        m[kind] = {"build_s": build, "curve": curve, "code_bytes": code,
                   "refine": args.refine if kind.startswith("fastscan") else 0}
        if kind != "flat":
            m[kind]["by_residual"] = kind in ("pq8", "fastscan")
        del index, q, inner
    with open(args.out, "w") as f:
        json.dump([{"system": "faiss", "dataset": args.dataset, "n": int(n), "dim": int(dim),
                    "metric": args.metric, "metrics": m}], f, indent=1)


def plot_curves(ds, any_run, v, f, plot_dir):
    """Writes PLOT_DIR/ivf-<ds>.svg (recall@10 against queries/s: the store's kinds and FAISS's, one point per
    nprobe) and returns the markdown image line."""
    names = {"flat": "IVF-Flat", "pq8": "IVF-PQ8", "pq8_raw": "IVF-PQ8 (raw)", "fastscan": "PQ4 fast scan (residual)",
             "fastscan_raw": "PQ4 fast scan (raw)"}
    series = []
    for kind in [k for k in ("flat", "pq8", "pq8_raw", "fastscan", "fastscan_raw") if k in args.kinds.split(",")]:
        for run, key, who, dashed in ((v, "store_" + kind, "vecstore", False), (f, kind, "FAISS", True)):
            m = run and run["metrics"].get(key)
            if not m:
                continue
            pts = sorted(m["curve"], key=lambda p: p["nprobe"])
            series.append({"name": f"{who} {names[kind]}", "dashed": dashed,
                           "points": [(float(p["recall"]), p["qps_1t"], f"{p['nprobe']}" if not dashed else None)
                                      for p in pts]})
    os.makedirs(plot_dir, exist_ok=True)
    name = f"ivf-{ds}.svg"
    am = any_run["metrics"]
    svgplot.write(os.path.join(plot_dir, name), svgplot.chart(
        series, title=f"{ds}: IVF recall@10 vs queries/s (1 thread)",
        subtitle=f"{any_run['n']:,} × {any_run['dim']}, {any_run['metric']}; nlist={am['nlist']}; "
                 "labels: nprobe (1 … 64)",
        x_label="recall@10", y_label="queries/s", log_y=True, width=900))
    return f"![{ds}: IVF recall@10 against queries/s for the vecstore store and FAISS](plots/{name})"


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
    names = {"flat": "IVF-Flat", "pq8": "IVF-PQ 8-bit, residual codes",
             "pq8_raw": "IVF-PQ 8-bit, raw-vector codes", "fastscan": "IVF-PQ 4-bit fast scan, residual codes, + refine",
             "fastscan_raw": "IVF-PQ 4-bit fast scan, raw-vector codes, + refine"}
    for ds in datasets:
        by = {r["system"]: r for r in runs if r["dataset"] == ds}
        v, f = by.get("vecstore"), by.get("faiss")
        any_run = v or f
        am = any_run["metrics"]
        w(f"### {ds} ({any_run['n']:,} × {any_run['dim']}, {any_run['metric']}; nlist={am['nlist']}, "
          f"IVF-PQ M={am['pq_m']} × 8 bits, fast scan M={am['fs_m']} × 4 bits, refine={am['refine']})")
        w("")
        vk = v and v["metrics"].get("kmeans_s")
        fk = f and f["metrics"].get("kmeans_s")
        w(f"k-means (k={am['nlist']}, {am['iterations']} iterations, ≤ 256 rows per centroid, 1 thread): "
          f"vecstore {fmt(vk, 3)} s, FAISS `Kmeans` {fmt(fk, 3)} s (time ratio FAISS / vecstore {ratio(fk, vk)}).")
        w("")
        for kind in [k for k in ("flat", "pq8", "pq8_raw", "fastscan", "fastscan_raw") if k in args.kinds.split(",")]:
            vm = v and v["metrics"].get(kind)
            sm = v and v["metrics"].get("store_" + kind)
            fm = f and f["metrics"].get(kind)
            if not (vm or fm or sm):
                continue
            code = (vm or fm or sm)["code_bytes"]
            extra = ""
            if vm:
                extra = (f"; lists min/median/max {vm['list_min']}/{vm['list_median']}/{vm['list_max']}, "
                         f"coarse training error {vm['coarse_mse']:.4g}"
                         + (f", PQ training error {vm['code_mse']:.4g}" if kind != "flat" else ""))
            store = ""
            if sm:
                store = (f"; store: build {fmt(sm['build_s'], 2)} s, index on disk {sm['bytes_per_vector']:.1f} B per "
                         f"vector (lists, row ids, centroids, codebooks, B-tree pages)")
            if fm and "by_residual" in fm:
                extra += ("; both code residuals (FAISS `by_residual = True`)" if fm["by_residual"]
                          else "; both code the raw vectors (FAISS `by_residual = False`, store "
                               "`--pq-residual off`)")
            w(f"**{names[kind]}** ({code} B per vector; build = train + add on 1 thread: store {fmt(sm and sm['build_s'], 2)} s, "
              f"core {fmt(vm and vm['build_s'], 2)} s, FAISS {fmt(fm and fm['build_s'], 2)} s{store}{extra})")
            w("")
            w("| nprobe | store recall@10 | core recall@10 | FAISS recall@10 | Δ store − FAISS | store QPS | core QPS "
              "| FAISS QPS | store / FAISS |")
            w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            pts = {}
            for src, key in ((vm, "v"), (fm, "f"), (sm, "s")):
                if src:
                    for p in src["curve"]:
                        pts.setdefault(p["nprobe"], {})[key] = p
            for nprobe in sorted(pts):
                pv, pf, ps = pts[nprobe].get("v"), pts[nprobe].get("f"), pts[nprobe].get("s")
                for p in (pv, pf, ps):
                    if p:
                        p["recall"] = float(p["recall"])
                d = f"{ps['recall'] - pf['recall']:+.4f}" if ps and pf else "–"
                w(f"| {nprobe} | {fmt(ps and ps['recall'], 4)} | {fmt(pv and pv['recall'], 4)} | "
                  f"{fmt(pf and pf['recall'], 4)} | {d} | {fmt(ps and ps['qps_1t'])} | {fmt(pv and pv['qps_1t'])} | "
                  f"{fmt(pf and pf['qps_1t'])} | {ratio(ps and ps['qps_1t'], pf and pf['qps_1t'])} |")
            w("")
        if args.write:
            w(plot_curves(ds, any_run, v, f, os.path.join(os.path.dirname(os.path.abspath(args.write)), "plots")))
            w("")
    text = "\n".join(out)
    intro = ("**store**: the IVF index kinds of the store (issue 10): `buildIVF` on one thread, then "
             "`searchBatch` with one thread (k = 10): LMDB read snapshot, list blocks scanned in place in the "
             "memory map, re-ranking from the stored float32 vectors and id resolution included. **core**: the "
             "in-memory `VecStoreQuant.IVFIndex` (same scans, no store), one `search` call per query. FAISS: one "
             "batched `search` call with `omp_set_num_threads(1)`. The store's bytes per vector count what its "
             "index adds to the file (the `ivf` and `ivf-lists` databases); the float32 vectors are kept in "
             "`vectors` in every kind.")
    publish(args, "ivf", "## IVF and PQ (store and in-memory core)", text, intro)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peers")
    p.add_argument("--dataset", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--groundtruth", required=True)
    p.add_argument("--metric", required=True, choices=["l2", "cosine", "dot"])
    p.add_argument("--nlist", type=int, required=True)
    p.add_argument("--pq-m", type=int, required=True)
    p.add_argument("--fs-m", type=int, required=True)
    p.add_argument("--refine", type=int, default=10)
    p.add_argument("--nprobes", default="1,2,4,8,16,32,64")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-queries", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--kinds", default="flat,pq8,pq8_raw,fastscan,fastscan_raw",
                   help="comma-separated FAISS kinds to run (default: all)")
    r = sub.add_parser("report")
    r.add_argument("results", nargs="+")
    r.add_argument("--write")
    r.add_argument("--command", default="Tools/bench-ivf")
    args = ap.parse_args()
    peers(args) if args.cmd == "peers" else report(args)


if __name__ == "__main__":
    main()
