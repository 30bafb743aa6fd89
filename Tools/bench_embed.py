"""sentence-transformers side of Tools/bench-embed: the same all-MiniLM-L6-v2 folder, the same texts,
batch throughput (sentences/s) and single-query latency at each thread count, on CPU."""
import argparse, json, time
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--texts", required=True)
p.add_argument("--queries", required=True)
p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--json", required=True)
a = p.parse_args()

def read(path):
    return [json.loads(l).get("text") or "" for l in open(path, encoding="utf-8") if l.strip()]

docs, queries = read(a.texts), read(a.queries)
model = SentenceTransformer(a.model, device="cpu")
out = {"texts": len(docs), "queries": len(queries), "batch_size": a.batch_size,
       "torch": torch.__version__, "system": "sentence-transformers"}
for t in a.threads:
    torch.set_num_threads(t)
    with torch.inference_mode():
        model.encode(docs[:64], batch_size=a.batch_size, normalize_embeddings=True, show_progress_bar=False)
        s = time.perf_counter()
        model.encode(docs, batch_size=a.batch_size, normalize_embeddings=True, show_progress_bar=False)
        seconds = time.perf_counter() - s
        for q in queries[:20]:
            model.encode([q], normalize_embeddings=True, show_progress_bar=False)
        lat = []
        for q in queries:
            s = time.perf_counter()
            model.encode([q], normalize_embeddings=True, show_progress_bar=False)
            lat.append((time.perf_counter() - s) * 1000)
    row = {"sentences_per_s": len(docs) / seconds, "seconds": seconds,
           "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}
    out[f"threads_{t}"] = row
    print(f"sentence-transformers threads={t}: {row['sentences_per_s']:.1f} sentences/s, "
          f"query p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms", flush=True)
json.dump(out, open(a.json, "w"), indent=1)
