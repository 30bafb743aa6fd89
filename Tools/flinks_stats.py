"""Per-value graph statistics of a docs1m store imported with filter links (Spec/HNSW.md §3.1, §7.2),
read with py-lmdb and numpy only (no vecstore code): for each value, the out-degree of its rows' value lists
(mean, p10, median, by copy wave), the share of links to copies of the same docs60k paragraph (row % n60),
rows without in-links, and how many rows a walk from the value's lowest row reaches; the same counts over the
ordinary layer-0 lists of those rows. BENCHMARKS.md "Filter links at 954k: why the value graph navigates
worse" used it.

    python3 Tools/flinks_stats.py STORE .bench-data/docs1m-c16/sources.txt 16 [python,linux]

Assumes one HNSW collection with one linked field (docs1m's `source`), rows in docs1m order (copy c of
paragraph i at row c·n60 + i) and no deleted rows."""
import collections
import struct
import sys

import lmdb
import numpy as np

store, sources_path, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = sys.argv[4].split(",") if len(sys.argv) > 4 else ["python", "linux"]
env = lmdb.open(store, subdir=False, readonly=True, lock=False, max_dbs=64)
meta = env.open_db(b"meta", create=False)
graph = env.open_db(b"graph", create=False)
flinks = env.open_db(b"graph-flinks", create=False)
with env.begin() as txn:
    header = None
    for k, v in txn.cursor(db=meta):
        if k.startswith(b"hnsw:") and len(k) == 9:
            header = (struct.unpack(">I", k[5:])[0], bytes(v))
    if header is None:
        sys.exit("no HNSW header record")
    cid, h = header
    m = struct.unpack_from("<H", h, 2)[0]
    rows = struct.unpack_from("<I", h, 24)[0]
    slot_words = 1 + 2 * m

    def load(db, prefix):
        parts = []
        cur = txn.cursor(db=db)
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                parts.append(np.frombuffer(v, dtype="<u4").reshape(-1, slot_words))
        return np.concatenate(parts)[:rows].copy()

    layer0 = load(graph, struct.pack(">I", cid))
    value_links = load(flinks, struct.pack(">II", cid, 0))
sources = np.array(open(sources_path).read().split("\n")[:rows])
n60 = rows // copies
print(f"rows {rows}, M {m}, {copies} copies of {n60} paragraphs")


def stats(name, lists, sel):
    counts = np.minimum(lists[:, 0].astype(np.int64), 2 * m)
    ids = np.where(sel)[0]
    c = counts[ids]
    targets = np.concatenate([lists[i, 1:1 + counts[i]] for i in ids]) if len(ids) else np.zeros(0, np.uint32)
    owner = np.repeat(ids, c)
    same = sel[targets]
    sibling = (targets % n60) == (owner % n60)
    indeg = np.bincount(targets[same], minlength=rows)[ids]
    wave = ids // n60
    print(f"  {name}: links a row mean {c.mean():.2f}, p10 {np.percentile(c, 10):.0f}, median {np.median(c):.0f}, "
          f"max {c.max()}; to the same value {same.mean():.3f}; copies of the same paragraph among those "
          f"{sibling[same].mean():.3f}; rows without same-value in-links {(indeg == 0).sum()}")
    print("    by copy: links a row", [round(float(c[wave == w].mean()), 1) for w in range(copies)])
    print("    by copy: same value, other paragraph", [round(float(((same & ~sibling)[np.repeat(wave, c) == w]).sum()
                                                            / max(1, (wave == w).sum())), 1) for w in range(copies)])
    return ids


for value in values:
    sel = sources == value
    print(f"{value}: {sel.sum()} rows")
    ids = stats("value links", value_links, sel)
    stats("layer-0 links", layer0, sel)
    seen = np.zeros(rows, bool)
    queue = collections.deque([ids[0]])
    seen[ids[0]] = True
    while queue:
        x = queue.popleft()
        for y in value_links[x, 1:1 + min(int(value_links[x, 0]), 2 * m)]:
            if y < rows and not seen[y]:
                seen[y] = True
                queue.append(y)
    print(f"  value graph: {seen[ids].sum()} of {len(ids)} rows reached from row {ids[0]}")
