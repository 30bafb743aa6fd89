#!/usr/bin/env python3
"""Generate Samples/docs.jsonl: the small demo corpus that ships with vecstore.

    python3 Tools/make_samples.py            # rewrites Samples/docs.jsonl, notes.jsonl and the query files

The documents are short notes written for this demo (no third-party text), in five topics, with
metadata of every supported type (string, number, boolean, array). The vectors are 64-dimensional
feature-hashing embeddings of the text: each word (lower-cased, and its 3-letter prefix) adds a
pseudo-random ±1 pattern, and the sum is L2-normalised. They need no model or network, and texts that
share words get similar vectors, so similarity search on the sample behaves sensibly. Deterministic:
the same script always writes the same file. Standard library only.
"""
import hashlib
import json
import math
import os
import random
import re
import struct

DIM = 64
TOPICS = {
    "databases": [
        ("B-tree pages", "A B-tree keeps keys sorted in fixed-size pages so lookups and range scans touch few pages."),
        ("copy-on-write", "Copy-on-write trees never overwrite a live page; a commit writes new pages and flips the root."),
        ("write-ahead log", "A write-ahead log records changes before they reach the data file so a crash can be replayed."),
        ("MVCC readers", "Multi-version concurrency control lets readers keep a snapshot while a writer commits new versions."),
        ("memory maps", "Memory-mapped files let a database read pages through the operating system cache without copies."),
        ("compaction", "Compaction rewrites a store without deleted records and returns free pages to the file system."),
        ("secondary indexes", "A secondary index maps field values to record ids so filters avoid scanning every record."),
        ("vector search", "Vector search ranks documents by the cosine similarity of their embeddings to a query embedding."),
        ("HNSW graphs", "An HNSW graph links each vector to near neighbours on several layers for fast approximate search."),
        ("BM25 ranking", "BM25 scores documents by term frequency and inverse document frequency with length normalisation."),
    ],
    "cooking": [
        ("bread dough", "Bread dough needs flour, water, salt and yeast; kneading builds gluten and a long rise builds flavour."),
        ("tomato sauce", "A simple tomato sauce simmers tomatoes with olive oil, garlic and basil until it thickens."),
        ("risotto", "Risotto is made by stirring rice with hot stock a ladle at a time until the grains turn creamy."),
        ("pancakes", "Pancakes mix flour, eggs and milk into a thin batter cooked in a hot buttered pan."),
        ("curry", "A curry starts by frying onions, ginger and spices before simmering vegetables in coconut milk."),
        ("roast vegetables", "Roast vegetables caramelise in a hot oven when cut evenly and tossed with oil and salt."),
        ("soup stock", "Stock simmers bones or vegetables slowly for hours and is strained before use in soup."),
        ("salad dressing", "A vinaigrette whisks three parts oil with one part vinegar, mustard, salt and pepper."),
    ],
    "astronomy": [
        ("the Moon", "The Moon orbits the Earth every 27 days and always shows the same face because of tidal locking."),
        ("Mars", "Mars is a cold desert planet with the largest volcano in the solar system, Olympus Mons."),
        ("Jupiter", "Jupiter is a gas giant with a storm, the Great Red Spot, larger than the Earth."),
        ("black holes", "A black hole forms when a massive star collapses and gravity traps even light."),
        ("exoplanets", "Exoplanets are found by the dimming of their star as they transit or by its wobble."),
        ("comets", "Comets are icy bodies whose tails of gas and dust point away from the Sun."),
        ("galaxies", "The Milky Way is a spiral galaxy of hundreds of billions of stars around a central black hole."),
        ("telescopes", "Telescopes collect light with mirrors or lenses; a larger aperture shows fainter objects."),
    ],
    "programming": [
        ("Swift structs", "Swift structs are value types: copies are independent and mutation needs a var."),
        ("memory safety", "Memory-safe languages check bounds and lifetimes so a program cannot read freed memory."),
        ("SIMD", "SIMD instructions apply one operation to many numbers at once, speeding up dot products."),
        ("unit tests", "Unit tests check one function at a time and run fast enough to run on every change."),
        ("concurrency", "Data races happen when two threads touch the same memory and one writes without a lock."),
        ("error handling", "Typed errors name what failed and where so a caller can recover or report clearly."),
        ("profiling", "A profiler samples where a program spends its time before anyone guesses what to optimise."),
        ("command lines", "A good command-line tool prints help with examples and exits non-zero on failure."),
    ],
    "travel": [
        ("night trains", "Night trains cross Europe while passengers sleep in couchettes and wake in another country."),
        ("mountain huts", "Mountain huts offer beds and hot meals to hikers on long alpine trails."),
        ("city cycling", "Many cities rent bicycles from docks so visitors can ride between sights."),
        ("packing light", "Packing light means one bag, layers of clothing and a small first aid kit."),
        ("island ferries", "Ferries link islands to the mainland several times a day in summer."),
        ("museum passes", "A museum pass bundles entry to many museums and often skips the queue."),
    ],
}
ANGLES = [
    ("overview", "{fact}"),
    ("beginner question", "A beginner asks about {subject}. {fact}"),
    ("common mistake", "A common mistake with {subject} is rushing it. {fact}"),
    ("tip", "Tip on {subject}: {fact}"),
    ("history", "People have studied {subject} for a long time. {fact}"),
    ("comparison", "Compared with other ideas, {subject} stands out. {fact}"),
    ("checklist", "Before you start with {subject}, remember: {fact}"),
]

# Questions about the notes, for the `--help` examples of query, eval and import (Samples/queries.*):
# (query id, text, topic, subject slug). The relevant documents of a question are every angle of its subject.
QUERIES = [
    ("q1", "how do I cook rice until it is creamy", "cooking", "risotto"),
    ("q2", "why do readers keep a snapshot while a writer commits", "databases", "mvcc-readers"),
    ("q3", "which planet has the largest volcano", "astronomy", "mars"),
    ("q4", "how are planets around other stars found", "astronomy", "exoplanets"),
    ("q5", "what causes a data race between two threads", "programming", "concurrency"),
    ("q6", "sleeping on a train across Europe", "travel", "night-trains"),
    ("q7", "ranking documents by term frequency", "databases", "bm25-ranking"),
    ("q8", "how to make bread dough rise", "cooking", "bread-dough"),
]


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def embed(text):
    v = [0.0] * DIM
    for w in words(text):
        for feature, weight in ((w, 1.0), (w[:3], 0.5)):
            h = hashlib.blake2b(feature.encode(), digest_size=16).digest()
            rng = random.Random(h)
            for i in range(DIM):
                v[i] += weight * (1 if rng.random() < 0.5 else -1)
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [round(x / n, 6) for x in v]


def main():
    rng = random.Random(42)
    out = os.path.join(os.path.dirname(__file__), "..", "Samples", "docs.jsonl")
    rows = []
    for topic, items in TOPICS.items():
        for subject, fact in items:
            for angle, template in ANGLES:
                slug = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")
                text = template.format(subject=subject, fact=fact)
                rows.append({
                    "id": f"{topic}/{slug}/{angle.replace(' ', '-')}",
                    "vector": embed(text),
                    "text": text,
                    "metadata": {
                        "topic": topic,
                        "subject": subject,
                        "kind": angle,
                        "year": rng.randint(2015, 2026),
                        "rating": round(rng.uniform(1, 5), 1),
                        "reviewed": rng.random() < 0.6,
                        "tags": sorted(set(rng.sample(["intro", "advanced", "howto", "faq", "reference"], 2))),
                    },
                })
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} documents to {os.path.normpath(out)}")
    # The same notes as text only (no vectors), for the demo of `vecstore import --embed`.
    notes = os.path.join(os.path.dirname(out), "notes.jsonl")
    with open(notes, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if k != "vector"}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} text-only documents to {os.path.normpath(notes)}")
    write_queries(os.path.dirname(out), rows)


def write_queries(folder, rows):
    """Samples/queries.jsonl (BEIR layout: _id, text), queries.fvecs (their vectors, same embedding as the
    documents), queries_ids.txt (the ids, one a line, aligned with the .fvecs rows) and qrels.tsv (BEIR
    judgements: every angle of the question's subject is relevant)."""
    with open(os.path.join(folder, "queries.jsonl"), "w", encoding="utf-8") as f:
        for qid, text, _, _ in QUERIES:
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with open(os.path.join(folder, "queries.fvecs"), "wb") as f:
        for _, text, _, _ in QUERIES:
            v = embed(text)
            f.write(struct.pack(f"<i{len(v)}f", len(v), *v))
    with open(os.path.join(folder, "queries_ids.txt"), "w", encoding="utf-8") as f:
        for qid, _, _, _ in QUERIES:
            f.write(qid + "\n")
    ids = {r["id"] for r in rows}
    with open(os.path.join(folder, "qrels.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, _, topic, slug in QUERIES:
            relevant = [r["id"] for r in rows if r["id"].startswith(f"{topic}/{slug}/")]
            assert relevant and all(i in ids for i in relevant), qid
            for doc in relevant:
                f.write(f"{qid}\t{doc}\t1\n")
    print(f"wrote {len(QUERIES)} queries (jsonl, fvecs, ids) and their judgements to {os.path.normpath(folder)}")


if __name__ == "__main__":
    main()
