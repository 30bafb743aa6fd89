#!/usr/bin/env python3
"""Independent reader of vecstore's keyword index (Spec/BM25.md), written from the spec alone.

Reads a store with py-lmdb, decodes textinfo / terms / postings / doclens byte by byte, checks the
invariants of Spec/BM25.md §10 against the documents' texts (analysed by a Python re-implementation of
the analyzer of §7, stemming with the system libstemmer through ctypes), and, given queries, computes BM25 top-k by
scoring every posting (§8) and compares with `vecstore query --text --format jsonl`.

    conformance_bm25.py STORE --collection C [--vecstore BIN] [--query TEXT ...] [-k 10]

Needs: lmdb, and libstemmer.so.0d (Debian libstemmer0d). Exit status 0 when everything matches.
"""
import argparse
import json
import math
import struct
import subprocess
import sys
import unicodedata

import ctypes

import lmdb


class Stemmer:
    """Snowball stemmer from the C libstemmer (the same library vecstore links: stems differ between
    Snowball releases, e.g. Debian's 2.2.0 stems "added" to "ad", PyStemmer 3.1 to "add")."""

    lib = None

    def __init__(self, name):
        if Stemmer.lib is None:
            Stemmer.lib = ctypes.CDLL("libstemmer.so.0d")
            Stemmer.lib.sb_stemmer_new.restype = ctypes.c_void_p
            Stemmer.lib.sb_stemmer_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            Stemmer.lib.sb_stemmer_stem.restype = ctypes.POINTER(ctypes.c_ubyte)
            Stemmer.lib.sb_stemmer_stem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
            Stemmer.lib.sb_stemmer_length.restype = ctypes.c_int
            Stemmer.lib.sb_stemmer_length.argtypes = [ctypes.c_void_p]
        self.handle = Stemmer.lib.sb_stemmer_new(name.encode(), b"UTF_8")
        if not self.handle:
            fail(f"libstemmer has no algorithm {name!r}")
        self.cache = {}

    def stemWord(self, word):
        if word in self.cache:
            return self.cache[word]
        b = word.encode()
        out = Stemmer.lib.sb_stemmer_stem(self.handle, b, len(b))
        n = Stemmer.lib.sb_stemmer_length(self.handle)
        stem = bytes(out[:n]).decode()
        self.cache[word] = stem
        return stem

STOP = set("a an and are as at be but by for if in into is it no not of on or such that the their then there "
           "these they this to was will with".split())


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- analyzer (§7)

def fold_scalar(ch, cache={}):
    if ch in cache:
        return cache[ch]
    d = unicodedata.normalize("NFKD", ch)
    d = "".join(c for c in d if not (0x300 <= ord(c) <= 0x36F))
    d = unicodedata.normalize("NFC", d)
    out = "".join(c.lower() if c.lower() != c else c for c in d)
    cache[ch] = out
    return out


def is_word(c):
    o = ord(c)
    if o < 0x80:
        return c.isascii() and c.isalnum()
    cat = unicodedata.category(c)
    # Unicode alphabetic ≈ letters (L*) and Nl plus Other_Alphabetic marks; numbers; marks.
    return cat[0] in ("L", "N", "M")


def is_digit(c):
    o = ord(c)
    if o < 0x80:
        return "0" <= c <= "9"
    return unicodedata.numeric(c, None) is not None


CONNECTORS = {"-", "_", "\u2010", "\u2011"}


def tokens(text):
    if all(ord(c) < 0x80 for c in text):
        s = text.lower()
    else:
        s = "".join(c.lower() if ord(c) < 0x80 else fold_scalar(c) for c in text)
    i, n = 0, len(s)
    while i < n:
        while i < n and not is_word(s[i]):
            i += 1
        if i >= n:
            break
        parts, has_digit = [], False
        while True:
            start = i
            while i < n and is_word(s[i]):
                has_digit = has_digit or is_digit(s[i])
                i += 1
            parts.append(s[start:i])
            yield s[start:i]
            if i + 1 < n and s[i] in CONNECTORS and is_word(s[i + 1]):
                i += 1
                continue
            break
        if len(parts) > 1 and has_digit:
            yield "".join(parts)


def analyze(text, stemmer, stop_words):
    out = []
    for t in tokens(text):
        if len(t.encode()) > 100:
            continue
        if stop_words and t in STOP:
            continue
        out.append(stemmer.stemWord(t) if stemmer else t)
    return out


# ---------------------------------------------------------------- decoding (§3–§6)

def varints(buf, pos, count):
    values = []
    for _ in range(count):
        v, shift = 0, 0
        while True:
            b = buf[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        values.append(v)
    return values, pos


def decode_block(value):
    count, zero, max_tf, min_len, first, last = struct.unpack_from("<BBHIII", value, 0)
    if zero != 0 or not (1 <= count <= 128):
        fail(f"block header count {count} / reserved {zero}")
    gaps, pos = varints(value, 16, count - 1)
    tfs, pos = varints(value, pos, count)
    if pos != len(value):
        fail(f"block has {len(value) - pos} trailing bytes")
    rows = [first]
    for g in gaps:
        rows.append(rows[-1] + g)
    if rows[-1] != last:
        fail(f"block rows end at {rows[-1]}, header says {last}")
    return rows, tfs, max_tf, min_len


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--collection", "-c", required=True)
    ap.add_argument("--vecstore", default=".build/debug/vecstore")
    ap.add_argument("--query", action="append", default=[])
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args()

    env = lmdb.open(a.store, subdir=False, readonly=True, lock=False, max_dbs=32)
    dbs = {name: env.open_db(name.encode(), create=False)
           for name in ["meta", "docs", "live", "textinfo", "terms", "postings", "doclens"]}
    with env.begin() as txn:
        fmt = txn.get(b"format", db=dbs["meta"])
        version = struct.unpack_from("<I", fmt, 8)[0]
        if version != 2:
            fail(f"format version {version}, expected 2")
        rec = txn.get(b"collection:" + a.collection.encode(), db=dbs["meta"])
        cid, dim = struct.unpack_from("<II", rec, 0)
        rows_total, live_count = struct.unpack_from("<II", rec, 12)
        prefix = struct.pack(">I", cid)

        info = txn.get(prefix, db=dbs["textinfo"])
        ver, flags, n_stem, aver = struct.unpack_from("<BBBB", info, 0)
        k1, b = struct.unpack_from("<ff", info, 4)
        next_id, N = struct.unpack_from("<II", info, 12)
        total = struct.unpack_from("<Q", info, 20)[0]
        stem_name = bytes(info[28:28 + n_stem]).decode()
        if ver != 1 or aver != 1 or len(info) != 28 + n_stem:
            fail(f"textinfo version {ver} analyzer {aver} length {len(info)}")
        enabled, stop_words = bool(flags & 1), bool(flags & 2)
        stemmer = Stemmer(stem_name) if stem_name else None
        print(f"textinfo: enabled {enabled}, stemmer {stem_name or 'none'}, stop words {stop_words}, "
              f"k1 {k1:.3f}, b {b:.3f}, N {N}, total {total}, next term id {next_id}")

        # Live documents (the docs database holds exactly the live rows).
        docs = {}
        cur = txn.cursor(db=dbs["docs"])
        if cur.set_range(prefix):
            for key, value in cur:
                if key[:4] != prefix:
                    break
                row = struct.unpack_from(">I", key, 4)[0]
                idlen = struct.unpack_from("<H", value, 0)[0]
                ext = bytes(value[2:2 + idlen]).decode()
                off = 2 + idlen + 4
                tlen = struct.unpack_from("<I", value, off)[0]
                text = None if tlen == 0xFFFFFFFF else bytes(value[off + 4:off + 4 + tlen]).decode()
                docs[row] = (ext, text)

        # Lengths.
        def length(row, cache={}):
            blk = row >> 14
            if blk not in cache:
                cache[blk] = txn.get(prefix + struct.pack(">I", blk), db=dbs["doclens"])
            v = cache[blk]
            return 0 if v is None else struct.unpack_from("<I", v, (row & 16383) * 4)[0]

        # Expected index from the texts.
        expected, exp_n, exp_total = {}, 0, 0
        for row, (ext, text) in docs.items():
            if text is None or not enabled:
                continue
            terms = analyze(text, stemmer, stop_words)
            if terms:
                exp_n += 1
                exp_total += len(terms)
                if length(row) != len(terms):
                    fail(f"row {row} length {length(row)}, text has {len(terms)} terms")
            for t in terms:
                expected.setdefault(t, {}).setdefault(row, 0)
                expected[t][row] += 1
        if (exp_n, exp_total) != (N, total):
            fail(f"N/total {N}/{total}, texts give {exp_n}/{exp_total}")

        # Dictionary and postings.
        index = {}
        cur = txn.cursor(db=dbs["terms"])
        if cur.set_range(prefix):
            for key, value in cur:
                if key[:4] != prefix:
                    break
                term = bytes(key[4:]).decode()
                tid, df, npost, nblocks = struct.unpack("<IIII", value)
                if tid >= next_id:
                    fail(f"term {term!r} id {tid} >= next id {next_id}")
                postings, last_row = {}, -1
                pcur = txn.cursor(db=dbs["postings"])
                for j in range(nblocks):
                    v = pcur.get(prefix + struct.pack(">II", tid, j)) and pcur.value()
                    if not v:
                        fail(f"term {term!r} block {j} missing")
                    rows, tfs, max_tf, min_len = decode_block(v)
                    if j < nblocks - 1 and len(rows) != 128:
                        fail(f"term {term!r} block {j} holds {len(rows)} postings, not 128")
                    if rows[0] <= last_row:
                        fail(f"term {term!r} rows not increasing")
                    last_row = rows[-1]
                    if max(tfs) > max_tf or min(length(r) for r in rows) < min_len:
                        fail(f"term {term!r} block {j} bounds too low")
                    for r, tf in zip(rows, tfs):
                        postings[r] = tf
                if sum(1 for _ in postings) != npost:
                    fail(f"term {term!r}: {len(postings)} postings, entry says {npost}")
                live = {r: tf for r, tf in postings.items() if r in docs}
                if live != expected.get(term, {}):
                    want = expected.get(term, {})
                    diff = sorted(set(live.items()) ^ set(want.items()))[:3]
                    fail(f"term {term!r}: live postings differ from the texts: (row, tf) only on one side: {diff}; "
                         f"index {[(r, live.get(r)) for r, _ in diff]}, texts {[(r, want.get(r)) for r, _ in diff]}")
                if df != len(expected.get(term, {})):
                    fail(f"term {term!r}: df {df}, texts give {len(expected.get(term, {}))}")
                index[term] = (df, live)
        missing = set(expected) - set(index)
        if missing:
            fail(f"terms missing from the dictionary: {sorted(missing)[:5]}")
        print(f"index: {len(index)} terms, {sum(len(p) for _, p in index.values())} live postings — consistent")

        # Queries: exhaustive BM25 (§8) against the CLI.
        avgdl = total / N if N else 1.0
        for q in a.query:
            terms = list(dict.fromkeys(analyze(q, stemmer, stop_words)))
            scores = {}
            for t in terms:
                if t not in index or index[t][0] == 0:
                    continue
                df, live = index[t]
                idf = math.log(1 + (N - df + 0.5) / (df + 0.5))
                for r, tf in live.items():
                    norm = k1 * (1 - b + b * length(r) / avgdl)
                    scores[r] = scores.get(r, 0.0) + idf * tf * (k1 + 1) / (tf + norm)
            ranked = sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:a.k]
            out = subprocess.run([a.vecstore, "query", a.store, "-c", a.collection, "--text", q, "-k", str(a.k),
                                  "--format", "jsonl"], capture_output=True, text=True, check=True).stdout
            got = json.loads(out)["results"]
            if len(got) != len(ranked):
                fail(f"query {q!r}: CLI gives {len(got)} results, reference {len(ranked)}")
            for (row, score), hit in zip(ranked, got):
                if abs(hit["score"] - score) > 1e-4 * max(1, score):
                    fail(f"query {q!r}: score {hit['score']} vs reference {score}")
                if hit["id"] != docs[row][0] and abs(hit["score"] - score) > 1e-6:
                    fail(f"query {q!r}: id {hit['id']} vs reference {docs[row][0]}")
            print(f"query {q!r}: top {len(got)} match the reference")
    print("ok")


if __name__ == "__main__":
    main()
