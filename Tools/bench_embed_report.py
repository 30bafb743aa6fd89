"""Prints the text-embedding tables from Tools/bench-embed's JSON results and, with --write FILE, replaces the
section between <!-- embed:begin --> and <!-- embed:end --> of FILE (appending the markers if absent)."""
import json, os, sys

r = sys.argv[1]
def load(name):
    p = os.path.join(r, name)
    return json.load(open(p)) if os.path.exists(p) else None

vs, st, sf, imp = load("vecstore.json"), load("st.json"), load("scifact.json"), load("import.json")
lines = []
if vs and st:
    lines += [f"Texts: the first {vs['texts']:,} docs60k paragraphs (mean {vs['mean_tokens']:.0f} word pieces with [CLS]/[SEP]) "
              f"in batches of {vs['batch_size']}; latency: the {vs['queries']} SciFact test queries one at a time "
              f"(mean {vs['query_mean_tokens']:.0f} word pieces). sentence-transformers: torch {st['torch']} on CPU, fp32.", "",
              "| threads | vecstore sent/s | sentence-transformers sent/s | ratio | vecstore p50 / p99 ms | sentence-transformers p50 / p99 ms | p50 ratio |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(k for k in vs if k.startswith("threads_")):
        a, b = vs[key], st.get(key)
        if not b: continue
        lines.append(f"| {key.split('_')[1]} | {a['sentences_per_s']:.1f} | {b['sentences_per_s']:.1f} | "
                     f"{a['sentences_per_s'] / b['sentences_per_s']:.2f}× | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | "
                     f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {b['p50_ms'] / a['p50_ms']:.2f}× faster |")
    lines.append("")
if sf:
    lines += [f"SciFact with vecstore's own embeddings of corpus and queries (`import --embed`, `eval --embed`): dense nDCG@10 "
              f"**{sf['ndcg10_exact']:.4f}** exact ({sf['ndcg10_hnsw']:.4f} through HNSW; the shipped sentence-transformers vectors "
              f"give 0.6451), hybrid {sf['ndcg10_hybrid']:.4f}, RRF {sf['ndcg10_rrf']:.4f}. Importing the 5,183 documents "
              f"(title + abstract, truncated to 256 word pieces) with embedding took {sf['import_seconds']:.1f} s "
              f"({sf['docs'] / sf['import_seconds']:.0f} docs/s, 2 threads).", ""]
if imp:
    lines += [f"docs60k end to end: `vecstore import --embed all-minilm-l6-v2` of all {imp['docs']:,} paragraphs "
              f"(text only, release build, 2 threads): {imp['seconds']:.0f} s, {imp['docs'] / imp['seconds']:.0f} docs/s.", ""]
text = "\n".join(lines)
print(text)
if "--write" in sys.argv:
    path = sys.argv[sys.argv.index("--write") + 1]
    doc = open(path, encoding="utf-8").read()
    begin, end = "<!-- embed:begin -->", "<!-- embed:end -->"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        old, tail = rest.split(end, 1)
        # Keep parts measured in earlier runs (--only) that this run did not redo.
        keep = [p for p in old.strip().split("\n\n") if p and not any(
            (vs and st and p.startswith(("Texts:", "| threads"))) or (sf and p.startswith("SciFact with")) or
            (imp and p.startswith("docs60k end to end")) for _ in [0])]
        body = "\n\n".join(([text.strip()] if text.strip() else []) + [k.strip() for k in keep if not k.startswith("```")])
        doc = head + begin + "\n" + body + "\n" + end + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + begin + "\n" + text.strip() + "\n" + end + "\n"
    open(path, "w", encoding="utf-8").write(doc)
    print(f"wrote the embedding section of {path}")
