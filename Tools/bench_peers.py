#!/usr/bin/env python3
"""Peer-library benchmarks for the vecstore benchmark harness.

Run through Tools/bench, or by hand from the repo root:

    .venv-bench/bin/python Tools/bench_peers.py exact \
        --base B.fvecs --queries Q.fvecs --groundtruth G.ivecs \
        --metric l2|cosine|dot --json OUT.json [--max-queries N]

Each sub-command measures one kind of index from one peer library and writes
one JSON file in the shape Tools/bench_report.py reads:

    {"system": ..., "dataset": ..., "n": ..., "dim": ..., "metric": ...,
     "metrics": {name: number, ...}}

Sub-commands:
    exact   faiss IndexFlatL2 / IndexFlatIP (brute force), system "faiss"

More peers (e.g. `hnsw` for hnswlib) are added by writing a `cmd_<name>`
function and registering it in `build_parser()`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable

import numpy as np

K = 10
RUNS = 3          # best of RUNS for every timed figure
WARMUP = 5        # queries searched before each timed single-query loop
TIE_RTOL = 1e-5   # relative tolerance for ties at the k-th ground-truth distance


# --------------------------------------------------------------------------
# I/O


def read_fvecs(path: str) -> np.ndarray:
    """fvecs: per record an int32 dim followed by dim float32 values."""
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise SystemExit(f"{path}: empty file")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1) != 0:
        raise SystemExit(f"{path}: not an fvecs file (dim={dim}, {raw.size} words)")
    rec = raw.reshape(-1, dim + 1)
    if not np.all(rec[:, 0] == dim):
        raise SystemExit(f"{path}: records with differing dimensions")
    return np.ascontiguousarray(rec[:, 1:].view(np.float32))


def read_ivecs(path: str) -> np.ndarray:
    """ivecs: per record an int32 count followed by count int32 values."""
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise SystemExit(f"{path}: empty file")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1) != 0:
        raise SystemExit(f"{path}: not an ivecs file (dim={dim}, {raw.size} words)")
    rec = raw.reshape(-1, dim + 1)
    if not np.all(rec[:, 0] == dim):
        raise SystemExit(f"{path}: records with differing lengths")
    return np.ascontiguousarray(rec[:, 1:])


def dataset_name(base_path: str) -> str:
    return os.path.basename(os.path.dirname(os.path.abspath(base_path)))


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True).astype(np.float32)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def write_json(path: str, doc: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Threads / environment


def threadpool_report() -> list[dict]:
    """Print (and return) which BLAS / OpenMP runtimes are loaded, if
    threadpoolctl is importable. Optional: nothing breaks without it."""
    try:
        import threadpoolctl  # type: ignore
    except ImportError:
        print("threadpoolctl not importable; BLAS/threadpool info not shown",
              file=sys.stderr)
        return []
    info = threadpoolctl.threadpool_info()
    for lib in info:
        desc = (f"  {lib.get('user_api')}: {lib.get('internal_api')} "
                f"{lib.get('version') or ''} threads={lib.get('num_threads')}")
        if lib.get("architecture"):
            desc += f" arch={lib['architecture']}"
        if lib.get("threading_layer"):
            desc += f" layer={lib['threading_layer']}"
        desc += f"  ({os.path.basename(lib.get('filepath', ''))})"
        print(desc, file=sys.stderr)
    return [{k: lib.get(k) for k in ("user_api", "internal_api", "version",
                                      "num_threads", "architecture",
                                      "threading_layer")}
            | {"file": os.path.basename(lib.get("filepath", ""))}
            for lib in info]


class Threads:
    """Context manager setting OpenMP (faiss) and, if threadpoolctl is
    available, BLAS thread counts."""

    def __init__(self, n: int):
        self.n = n
        self._limiter = None
        self._prev = None

    def __enter__(self):
        import faiss
        self._prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)
        try:
            import threadpoolctl  # type: ignore
            self._limiter = threadpoolctl.threadpool_limits(limits=self.n)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        import faiss
        if self._limiter is not None:
            self._limiter.restore_original_limits()
        faiss.omp_set_num_threads(self._prev)
        return False


def best_of(fn: Callable[[], None], runs: int = RUNS) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------
# Recall with ties


def exact_scores(base: np.ndarray, q: np.ndarray, ids: np.ndarray,
                 metric: str) -> np.ndarray:
    """Distances (l2: squared L2, lower is better) or similarities (cosine,
    dot: higher is better) of q to base[ids], in float64. base and q must
    already be normalised for cosine. Invalid ids (-1) give NaN."""
    ids = np.asarray(ids)
    valid = (ids >= 0) & (ids < base.shape[0])
    out = np.full(ids.shape, np.nan)
    if valid.any():
        v = base[ids[valid]].astype(np.float64)
        qq = q.astype(np.float64)
        if metric == "l2":
            out[valid] = ((v - qq) ** 2).sum(axis=1)
        else:
            out[valid] = v @ qq
    return out


def recall_at_k(base: np.ndarray, queries: np.ndarray, gt: np.ndarray,
                found: np.ndarray, metric: str, k: int = K) -> float:
    """Mean over queries of |found[:k] ∩ gt[:k]| / k, where a returned id not
    in gt[:k] still counts if its exact score equals the k-th ground-truth
    score within TIE_RTOL (relative) — or is better than it."""
    if gt.shape[1] < k:
        raise SystemExit(f"ground truth has only {gt.shape[1]} neighbours per query, need {k}")
    higher_better = metric != "l2"
    total = 0
    for i in range(found.shape[0]):
        truth = set(int(x) for x in gt[i, :k])
        kth = exact_scores(base, queries[i], gt[i, k - 1:k], metric)[0]
        tol = TIE_RTOL * max(abs(kth), 1e-12)
        seen = set()
        hits = 0
        cand = [int(x) for x in found[i, :k]]
        extra = [x for x in cand if x not in truth and x >= 0]
        extra_scores = dict(zip(extra, exact_scores(base, queries[i],
                                                    np.array(extra, dtype=np.int64),
                                                    metric))) if extra else {}
        for x in cand:
            if x < 0 or x in seen:
                continue
            seen.add(x)
            if x in truth:
                hits += 1
            else:
                s = extra_scores[x]
                ok = (s >= kth - tol) if higher_better else (s <= kth + tol)
                hits += int(bool(ok))
        total += min(hits, k)
    return total / (k * found.shape[0])


# --------------------------------------------------------------------------
# Common loading


def load_inputs(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = read_fvecs(args.base)
    queries = read_fvecs(args.queries)
    gt = read_ivecs(args.groundtruth)
    if base.shape[1] != queries.shape[1]:
        raise SystemExit(f"dimension mismatch: base {base.shape[1]}, queries {queries.shape[1]}")
    if gt.shape[0] < queries.shape[0]:
        raise SystemExit(f"ground truth has {gt.shape[0]} rows for {queries.shape[0]} queries")
    gt = gt[: queries.shape[0]]
    if args.max_queries is not None and args.max_queries > 0:
        queries = queries[: args.max_queries]
        gt = gt[: args.max_queries]
    if args.metric == "cosine":
        base = normalize(base)
        queries = normalize(queries)
    return base, np.ascontiguousarray(queries, dtype=np.float32), gt


def env_info(threads_all: int, blas: list[dict]) -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "threads_all": threads_all}
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    if blas:
        info["threadpools"] = blas
    return info


# --------------------------------------------------------------------------
# exact: faiss flat index


def cmd_exact(args) -> int:
    import faiss

    print(f"faiss {faiss.__version__}", file=sys.stderr)
    blas = threadpool_report()
    for lib in blas:
        if lib.get("internal_api") == "openblas" and lib.get("architecture") == "Prescott":
            print(f"  warning: {lib.get('file')} runs OpenBLAS's generic 'Prescott' "
                  "kernels (CPU not recognised); BLAS-backed batched figures may be low",
                  file=sys.stderr)

    if args.blas_threshold is not None:
        faiss.cvar.distance_compute_blas_threshold = args.blas_threshold
    blas_threshold = int(faiss.cvar.distance_compute_blas_threshold)
    print(f"  faiss distance_compute_blas_threshold={blas_threshold} "
          f"(batches of fewer queries use faiss's own SIMD scan, not BLAS)", file=sys.stderr)

    base, queries, gt = load_inputs(args)
    n, dim = base.shape
    nq = queries.shape[0]
    name = dataset_name(args.base)
    threads_all = os.cpu_count() or 1
    print(f"{name}: n={n} dim={dim} nq={nq} metric={args.metric} "
          f"threads_all={threads_all}", file=sys.stderr)

    def make_index():
        return faiss.IndexFlatL2(dim) if args.metric == "l2" else faiss.IndexFlatIP(dim)

    # add_s: best of RUNS fresh adds (single call, default threads)
    index = None
    add_best = float("inf")
    for _ in range(RUNS):
        idx = make_index()
        t0 = time.perf_counter()
        idx.add(base)
        add_best = min(add_best, time.perf_counter() - t0)
        index = idx
    assert index is not None and index.ntotal == n

    def single_loop():
        for i in range(nq):
            index.search(queries[i:i + 1], K)

    def batch():
        index.search(queries, K)

    metrics: dict[str, float | int] = {"add_s": add_best}
    for label, nthreads in (("1t", 1), ("all", threads_all)):
        with Threads(nthreads):
            for i in range(min(WARMUP, nq)):
                index.search(queries[i:i + 1], K)
            t = best_of(single_loop)
            metrics[f"qps_single_{label}"] = nq / t
            index.search(queries[: min(nq, 32)], K)  # warm-up for the batched path
            t = best_of(batch)
            metrics[f"qps_batch_{label}"] = nq / t
        print(f"  threads={nthreads}: single {metrics[f'qps_single_{label}']:.1f} q/s, "
              f"batch {metrics[f'qps_batch_{label}']:.1f} q/s", file=sys.stderr)

    with Threads(threads_all):
        _, found = index.search(queries, K)
    metrics["recall@10"] = recall_at_k(base, queries, gt, found, args.metric)
    metrics["threads_all"] = threads_all

    order = ["add_s", "qps_single_1t", "qps_batch_1t", "qps_batch_all",
             "qps_single_all", "recall@10", "threads_all"]
    doc = {
        "system": "faiss",
        "dataset": name,
        "n": int(n),
        "dim": int(dim),
        "metric": args.metric,
        "metrics": {k: metrics[k] for k in order},
        "nq": int(nq),
        "k": K,
        "index": type(index).__name__,
        "version": faiss.__version__,
        "faiss_blas_threshold": blas_threshold,
        "env": env_info(threads_all, blas),
    }
    write_json(args.json, doc)
    print(f"  recall@10 {metrics['recall@10']:.4f}, add {add_best * 1e3:.1f} ms -> {args.json}",
          file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# CLI


def add_common(p: argparse.ArgumentParser, metrics: tuple[str, ...]) -> None:
    p.add_argument("--base", required=True, help="base vectors (.fvecs)")
    p.add_argument("--queries", required=True, help="query vectors (.fvecs)")
    p.add_argument("--groundtruth", required=True, help="ground-truth ids (.ivecs)")
    p.add_argument("--metric", required=True, choices=metrics)
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--max-queries", type=int, default=None,
                   help="use only the first N queries")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("exact", help="faiss flat (brute-force) index")
    add_common(p, ("l2", "cosine", "dot"))
    p.add_argument("--blas-threshold", type=int, default=None,
                   help="set faiss.cvar.distance_compute_blas_threshold (default: "
                        "faiss's own; batches of at least this many queries go "
                        "through BLAS sgemm)")
    p.set_defaults(func=cmd_exact)

    # Later, e.g.:
    # p = sub.add_parser("hnsw", help="hnswlib HNSW index")
    # add_common(p, ("l2", "cosine", "dot"))
    # p.add_argument("--m", type=int, default=16) ...
    # p.set_defaults(func=cmd_hnsw)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
