#!/usr/bin/env python3
"""Peer and reference numbers for the BM25 benchmark (driven by Tools/bench-bm25).

- bm25s (English stop words + Snowball English stemmer via PyStemmer): indexing docs/s on SciFact and
  docs60k, single-thread QPS and latency over the 300 SciFact test queries (query text -> top-10 ids,
  tokenizing and stemming included), and nDCG@10.
- A numpy brute-force dense reference: exact inner-product search with the MiniLM vectors
  (unit length, so = cosine), nDCG@10 on the same queries.

Writes one JSON object to --json.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import fvecs as read_fvecs  # noqa: E402


def read_qrels(path):
    qrels = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            cols = line.strip().split("\t")
            if n == 0 and not cols[-1].isdigit():
                continue
            if len(cols) < 3:
                continue
            qrels.setdefault(cols[0], {})[cols[1]] = int(cols[2])
    return qrels


def ndcg_at_10(results, qrels):
    """Mean nDCG@10 over judged queries (linear gain, trec_eval convention), as vecstore eval computes it."""
    total, judged = 0.0, 0
    for q, grades in qrels.items():
        rel = {d: g for d, g in grades.items() if g > 0}
        if not rel:
            continue
        judged += 1
        ranked = results.get(q, [])[:10]
        dcg = sum(rel[d] / math.log2(i + 2) for i, d in enumerate(ranked) if d in rel)
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        total += dcg / idcg if idcg > 0 else 0
    return total / judged


def percentile(values, p):
    return float(np.percentile(np.array(values), p))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scifact", required=True)
    ap.add_argument("--docs60k")
    ap.add_argument("--json", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    out = {"system": "bm25s", "bm25s_version": bm25s.__version__}

    corpus_ids, corpus_text = [], []
    with open(os.path.join(args.scifact, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus_ids.append(d["_id"])
            corpus_text.append(d["title"] + "\n" + d["text"])
    qrels = read_qrels(os.path.join(args.scifact, "qrels", "test.tsv"))
    queries = []
    with open(os.path.join(args.scifact, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] in qrels:
                queries.append((d["_id"], d["text"]))

    # Indexing: tokenizing + stemming + building the index.
    t = time.perf_counter()
    tokens = bm25s.tokenize(corpus_text, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    seconds = time.perf_counter() - t
    out["scifact_index_docs_per_s"] = len(corpus_text) / seconds

    # Queries one at a time on one thread: text -> tokens -> top-10 ids.
    def one(text):
        q = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, _ = retriever.retrieve(q, k=10, show_progress=False, n_threads=1)
        return [corpus_ids[i] for i in docs[0]]

    for qid, text in queries:  # warm-up
        one(text)
    best = float("inf")
    latencies = []
    results = {}
    for _ in range(args.runs):
        lat = []
        t0 = time.perf_counter()
        for qid, text in queries:
            t = time.perf_counter()
            results[qid] = one(text)
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        if elapsed < best:
            best, latencies = elapsed, lat
    out["bm25_qps_1t"] = len(queries) / best
    out["bm25_latency_p50_ms"] = percentile(latencies, 50) * 1000
    out["bm25_latency_p99_ms"] = percentile(latencies, 99) * 1000
    out["bm25_ndcg@10"] = ndcg_at_10(results, qrels)

    # The same queries as one batch (bm25s's fastest mode), for reference.
    best_batch = float("inf")
    for _ in range(args.runs):
        t = time.perf_counter()
        q = bm25s.tokenize([text for _, text in queries], stopwords="en", stemmer=stemmer, show_progress=False)
        retriever.retrieve(q, k=10, show_progress=False, n_threads=1)
        best_batch = min(best_batch, time.perf_counter() - t)
    out["bm25_batch_qps_1t"] = len(queries) / best_batch
    out["queries"] = len(queries)

    # Dense reference: exact inner product with the provided MiniLM vectors.
    minilm = os.path.join(args.scifact, "minilm")
    cv = read_fvecs(os.path.join(minilm, "corpus.fvecs"))
    with open(os.path.join(minilm, "corpus_ids.txt"), encoding="utf-8") as f:
        cids = [l.strip() for l in f if l.strip()]
    qv = read_fvecs(os.path.join(minilm, "queries.fvecs"))
    with open(os.path.join(minilm, "queries_ids.txt"), encoding="utf-8") as f:
        qids = [l.strip() for l in f if l.strip()]
    qindex = {q: i for i, q in enumerate(qids)}
    dense = {}
    for qid, _ in queries:
        scores = cv @ qv[qindex[qid]]
        top = np.argsort(-scores, kind="stable")[:10]
        dense[qid] = [cids[i] for i in top]
    out["dense_ndcg@10"] = ndcg_at_10(dense, qrels)

    # Fusion of bm25s and the dense reference (top 100 of each): min-max normalised over each list,
    # a document missing from a list scoring 0 there, alpha 0.5; and RRF with k = 60.
    weighted, rrf = {}, {}
    for qid, text in queries:
        q = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, scores = retriever.retrieve(q, k=100, show_progress=False, n_threads=1)
        sparse = [(corpus_ids[i], float(s)) for i, s in zip(docs[0], scores[0])]
        dscores = cv @ qv[qindex[qid]]
        top = np.argsort(-dscores, kind="stable")[:100]
        dense_list = [(cids[i], float(dscores[i])) for i in top]

        def minmax(items):
            vals = [s for _, s in items]
            lo, hi = min(vals), max(vals)
            return {d: (s - lo) / (hi - lo) if hi > lo else 0.0 for d, s in items}

        ns, nd = minmax(sparse), minmax(dense_list)
        fused = {d: 0.5 * ns.get(d, 0.0) + 0.5 * nd.get(d, 0.0) for d in set(ns) | set(nd)}
        weighted[qid] = [d for d, _ in sorted(fused.items(), key=lambda x: -x[1])[:10]]
        r = {}
        for lst in (sparse, dense_list):
            for rank, (d, _) in enumerate(lst):
                r[d] = r.get(d, 0.0) + 1.0 / (60 + rank + 1)
        rrf[qid] = [d for d, _ in sorted(r.items(), key=lambda x: -x[1])[:10]]
    out["hybrid_ndcg@10"] = ndcg_at_10(weighted, qrels)
    out["rrf_ndcg@10"] = ndcg_at_10(rrf, qrels)

    if args.docs60k:
        texts = []
        with open(args.docs60k, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                texts.append((d.get("title") or "") + "\n" + (d.get("text") or ""))
        t = time.perf_counter()
        tok = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        r = bm25s.BM25()
        r.index(tok, show_progress=False)
        out["docs60k_index_docs_per_s"] = len(texts) / (time.perf_counter() - t)

    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    print(f"bm25s: {out['bm25_qps_1t']:.0f} q/s one at a time ({out['bm25_batch_qps_1t']:.0f} q/s batched), "
          f"nDCG@10 {out['bm25_ndcg@10']:.4f}; dense numpy nDCG@10 {out['dense_ndcg@10']:.4f}; "
          f"bm25s+dense fusion {out['hybrid_ndcg@10']:.4f}, RRF {out['rrf_ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
