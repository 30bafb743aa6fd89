#!/usr/bin/env python3
"""PCA reduction benchmark: peers and report.

  bench_pca.py peers --base B.fvecs --queries Q.fvecs --groundtruth G.ivecs --dims 384,192,128,64
                     [--pca-sample 10000] [--runs 3] --out peers.json
      FAISS PCAMatrix (fitted on the same first rows) + IndexFlatIP over renormalised projections:
      recall@10 against the full-dimensional ground truth, single-query QPS on 1 thread, index size;
      and a numpy reference of vecstore's method (covariance eigenvectors, no mean subtracted under
      cosine): explained variance and recall@10, to check vecstore's figures independently.

  bench_pca.py report VECSTORE.json PEERS.json [--write BENCHMARKS.md --command "..." --plot-dir plots]
      One table; --write replaces the section between <!-- pca:begin --> and <!-- pca:end --> and
      writes plots/pca-<dataset>.svg (recall@10 against queries/s per dimension).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgplot  # noqa: E402
from benchlib import fvecs, ivecs, recall_at, publish  # noqa: E402
import benchlib  # noqa: E402


def peers(args):
    import numpy as np
    import faiss

    faiss.omp_set_num_threads(1)
    base = fvecs(args.base)
    queries = fvecs(args.queries)
    truth = ivecs(args.groundtruth)[:, :10]
    faiss.normalize_L2(base)
    faiss.normalize_L2(queries)
    n, d = base.shape
    sample = base[: args.pca_sample]
    # numpy reference: covariance (n - 1), eigh, no mean subtracted at projection (vecstore under cosine).
    cov = np.cov(sample.astype(np.float64).T)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    points = []
    for k in [int(x) for x in args.dims.split(",")]:
        p = {"dim": k}
        if k < d:
            pca = faiss.PCAMatrix(d, k)
            t = time.perf_counter()
            pca.train(sample)
            p["faiss_fit_s"] = time.perf_counter() - t
            xb = pca.apply_py(base)
            faiss.normalize_L2(xb)
            xq = pca.apply_py(queries)
            faiss.normalize_L2(xq)
            index = faiss.IndexFlatIP(k)
            index.add(xb)
            size = len(faiss.serialize_index(faiss.IndexPreTransform(pca, faiss.IndexFlatIP(k)))) + xb.nbytes
            w = vectors[:, :k].T
            yb = base @ w.T
            yb /= np.linalg.norm(yb, axis=1, keepdims=True)
            yq = queries @ w.T
            yq /= np.linalg.norm(yq, axis=1, keepdims=True)
            ref = np.argsort(-(yq @ yb.T), axis=1, kind="stable")[:, :10]
            p["numpy_recall"] = recall_at(ref, truth)
            p["numpy_explained_variance"] = float(values[:k].sum() / values.sum())
        else:
            index = faiss.IndexFlatIP(d)
            index.add(base)
            xq = queries
            size = len(faiss.serialize_index(index))
        best = float("inf")
        labels = None
        for _ in range(args.runs):
            t = time.perf_counter()
            out = [index.search(xq[i: i + 1], 10)[1][0] for i in range(len(xq))]
            best = min(best, time.perf_counter() - t)
            labels = out
        p["faiss_recall"] = recall_at(np.array(labels), truth)
        p["faiss_qps_1t"] = len(xq) / best
        p["faiss_bytes"] = size
        print(f"d={k}: FAISS recall {p['faiss_recall']:.4f} {p['faiss_qps_1t']:.0f} q/s"
              + (f"; numpy reference recall {p['numpy_recall']:.4f}, explained {p['numpy_explained_variance']:.4f}"
                 if "numpy_recall" in p else ""), file=sys.stderr)
        points.append(p)
    doc = {"system": "faiss-pca", "dataset": os.path.basename(os.path.dirname(os.path.abspath(args.base))),
           "n": n, "dim": d, "metric": "cosine",
           "metrics": {"points": points, "faiss_version": faiss.__version__, "pca_sample": args.pca_sample}}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


def fmt(x, digits=0):
    """benchlib.fmt with every number as a float (this table prints whole numbers with their decimals)."""
    return benchlib.fmt(None if x is None else float(x), digits)


def report(args):
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(json.load(f))
    by = {r["system"]: r for r in runs}
    v, fa = by.get("vecstore"), by.get("faiss-pca")
    any_run = v or fa
    ds = any_run["dataset"]
    vp = {p["dim"]: p for p in (v["metrics"]["points"] if v else [])}
    fp = {p["dim"]: p for p in (fa["metrics"]["points"] if fa else [])}
    dims = sorted(set(vp) | set(fp), reverse=True)
    ef_ref = 64
    out = []
    w = out.append
    w(f"### {ds} ({any_run['n']:,} × {any_run['dim']}, cosine), PCA fitted on the first "
      f"{any_run['metrics'].get('pca_sample', '?'):,} rows")
    w("")
    w("Recall@10 against the full-dimensional ground truth; queries are the 384-d query vectors, projected by the "
      "collection (vecstore) or by the `PCAMatrix` (FAISS); QPS is one query per call on 1 thread. "
      f"vecstore HNSW: M=16, efConstruction=200, ef={ef_ref}. Store = the vecstore file after the import "
      "(vectors, HNSW graph with its float16 copies, documents); FAISS = serialized PCA + flat vectors.")
    w("")
    w("| dim | variance kept (vecstore / numpy) | vecstore exact recall | exact QPS | "
      f"HNSW ef={ef_ref} recall | HNSW QPS | store MB | import s | FAISS PCA+FlatIP recall | FAISS QPS | FAISS MB | "
      "numpy ref. recall | exact QPS vecstore / FAISS | projection µs/query |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in dims:
        a, b = vp.get(d, {}), fp.get(d, {})
        h = next((c for c in a.get("hnsw", []) if c["ef"] == ef_ref), {})
        ev = a.get("explained_variance")
        nev = b.get("numpy_explained_variance")
        var = "1 (no PCA)" if d == any_run["dim"] else f"{fmt(ev, 4)} / {fmt(nev, 4)}"
        ratio = (f"{a['exact_qps_1t'] / b['faiss_qps_1t']:.2f}×"
                 if a.get("exact_qps_1t") and b.get("faiss_qps_1t") else "–")
        w(f"| {d} | {var} | {fmt(a.get('exact_recall'), 4)} | {fmt(a.get('exact_qps_1t'))} | "
          f"{fmt(h.get('recall'), 4)} | {fmt(h.get('qps_1t'))} | {fmt(a.get('store_bytes', 0) / 1e6, 1)} | "
          f"{fmt(a.get('import_s'), 1)} | {fmt(b.get('faiss_recall'), 4)} | {fmt(b.get('faiss_qps_1t'))} | "
          f"{fmt(b.get('faiss_bytes', 0) / 1e6, 1)} | {fmt(b.get('numpy_recall'), 4)} | {ratio} | "
          f"{fmt(a.get('projection_us'), 1)} |")
    w("")
    hnsw_rows = []
    for d in dims:
        for c in vp.get(d, {}).get("hnsw", []):
            hnsw_rows.append(f"d={d} ef={c['ef']}: {c['recall']:.4f} at {c['qps_1t']:,.0f} q/s")
    if hnsw_rows:
        w("HNSW by ef: " + "; ".join(hnsw_rows) + ".")
        w("")
    plot_name = None
    if args.plot_dir:
        series = []
        if v:
            series.append({"name": "vecstore exact", "points": [
                (vp[d]["exact_recall"], vp[d]["exact_qps_1t"], f"{d}-d") for d in dims if d in vp]})
            series.append({"name": f"vecstore HNSW ef={ef_ref}", "points": [
                (c["recall"], c["qps_1t"], f"{d}-d") for d in dims if d in vp
                for c in vp[d].get("hnsw", []) if c["ef"] == ef_ref]})
        if fa:
            series.append({"name": "FAISS PCA+FlatIP", "dashed": True, "points": [
                (fp[d]["faiss_recall"], fp[d]["faiss_qps_1t"], f"{d}-d") for d in dims if d in fp]})
        plot_name = f"pca-{ds}.svg"
        svgplot.write(os.path.join(args.plot_dir, plot_name), svgplot.chart(
            [s for s in series if s["points"]], title=f"{ds}: PCA reduction, recall@10 vs queries/s",
            subtitle="one point per stored dimension; recall against the full-dimensional ground truth",
            x_label="recall@10", y_label="queries/s (1 thread)", log_y=True))
        w(f"![{ds}: recall@10 against queries/s per PCA dimension]({os.path.basename(args.plot_dir)}/{plot_name})")
        w("")
    text = "\n".join(out)
    publish(args, "pca", "## PCA reduction (Tools/bench-pca)", text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peers")
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--groundtruth", required=True)
    p.add_argument("--dims", default="384,192,128,64")
    p.add_argument("--pca-sample", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("results", nargs="+")
    r.add_argument("--write")
    r.add_argument("--command", default="Tools/bench-pca")
    r.add_argument("--plot-dir")
    args = ap.parse_args()
    peers(args) if args.cmd == "peers" else report(args)


if __name__ == "__main__":
    main()
