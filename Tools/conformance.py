#!/usr/bin/env python3
"""Independent conformance reader for vecstore stores (format version 1).

Written from Spec/FORMAT.md alone: it uses py-lmdb and numpy and no vecstore code.

    python3 Tools/conformance.py STORE                       # check format + invariants, list collections
    python3 Tools/conformance.py STORE --dump -c NAME        # print decoded documents as JSONL
    python3 Tools/conformance.py STORE -c NAME --check-against docs.jsonl
    python3 Tools/conformance.py STORE -c NAME --query-file q.fvecs -k 10 --expect results.jsonl
    python3 Tools/conformance.py STORE -c NAME --queries q.jsonl -k 10 --expect results.jsonl

Exit status: 0 conformant; 1 a check failed; 2 usage or I/O error; 3 the file is not a vecstore
store or has a format version this reader does not support.
"""

import argparse
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conformance_hnsw  # noqa: E402  (HNSW graph checks, Spec/HNSW.md §6)
import conformance_ivf  # noqa: E402  (IVF lists, PQ codes and ADC, Spec/IVF.md, Spec/PQ.md)

try:
    import lmdb
    import numpy as np
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"conformance.py needs py-lmdb and numpy ({e}); pip install lmdb numpy\n")
    sys.exit(2)

# ---------------------------------------------------------------------------------------------
# Constants of Spec/FORMAT.md
# ---------------------------------------------------------------------------------------------

SUPPORTED_VERSION = 2  # version 2 adds the keyword-index databases (Spec/BM25.md; checked by Tools/conformance_bm25.py)
MAX_READ_VERSION = 3  # version 3 = version 2 plus a `features` record (FORMAT.md §5)
KNOWN_FEATURES = {"pca", "embedder", "ivf", "ivf-pq-raw", "ivf-flat16", "hnsw-int8", "hnsw-tail", "idruns", "hnsw-flinks"}  # features this reader implements (Spec/PCA.md, Spec/EMBEDDER.md, Spec/IVF.md, Spec/HNSW.md §3.4 and §4.1, FORMAT.md §8.2); others by their flags (§5)
OPTIONAL_DATABASES = ["ivf", "ivf-lists", "idruns", "graph-flinks"]  # an index kind's databases (FORMAT.md §20.2) and the id runs (§8.2): absent in older stores
META_IDRUNS_PREFIX = b"idruns:"  # id-run record (FORMAT.md §8.2)
IDRUNS_MAX_LEVELS = 32
META_FEATURES = b"features"
MAGIC = b"VECSTORE"
DATABASES = ["meta", "vectors", "docs", "ids", "live", "fields", "graph", "graph-upper", "graph-vectors"]
DUP_DATABASES = {"fields"}  # MDB_DUPSORT | MDB_DUPFIXED
META_FORMAT = b"format"
META_NEXT_COLLECTION = b"next-collection-id"
META_SUPERSEDED = b"superseded"
META_COLLECTION_PREFIX = b"collection:"
METRICS = {0: "cosine", 1: "l2", 2: "dot"}
NO_TEXT = 0xFFFFFFFF
LIVE_BLOCK_IDS = 65536
LIVE_BLOCK_BYTES = LIVE_BLOCK_IDS // 8
VECTOR_BLOCK_TARGET = 1 << 20
MAX_KEY = 511
TAG_BOOL, TAG_NUMBER, TAG_STRING = 1, 2, 3


class NotAStore(Exception):
    pass


class Unsupported(Exception):
    pass


def expected_block_shift(dim):
    shift = 6
    while (1 << (shift + 1)) * (dim + 1) * 4 <= VECTOR_BLOCK_TARGET and shift < 20:
        shift += 1
    return shift


def be32(x):
    return struct.pack(">I", x)


def read_be32(b, off=0):
    return struct.unpack_from(">I", b, off)[0]


def read_le32(b, off=0):
    return struct.unpack_from("<I", b, off)[0]


def encode_number(x):
    """Order-preserving 8-byte big-endian encoding of a double (Spec §Field index)."""
    x = float(x)
    if x == 0.0:
        x = 0.0  # -0 is stored as +0
    bits = struct.unpack(">Q", struct.pack(">d", x))[0]
    if bits >> 63:
        bits = ~bits & 0xFFFFFFFFFFFFFFFF
    else:
        bits |= 1 << 63
    return struct.pack(">Q", bits)


def field_key(cid, name, value):
    """The `fields` key of one scalar metadata value, or None for non-indexable values."""
    k = be32(cid) + name.encode("utf-8") + b"\x00"
    if isinstance(value, bool):
        return k + bytes([TAG_BOOL, 1 if value else 0])
    if isinstance(value, (int, float)):
        return k + bytes([TAG_NUMBER]) + encode_number(value)
    if isinstance(value, str):
        k += bytes([TAG_STRING])
        room = MAX_KEY - len(k)
        return k + value.encode("utf-8")[:room]  # byte truncation, may cut a UTF-8 sequence
    return None


def field_keys(cid, metadata):
    keys = set()
    for name, value in metadata.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            k = field_key(cid, name, item)
            if k is not None:
                keys.add(k)
    return keys


# ---------------------------------------------------------------------------------------------
# Reading a store
# ---------------------------------------------------------------------------------------------


class Collection:
    def __init__(self, name, value):
        if len(value) < 20:
            raise ValueError(f"collection record of '{name}' has {len(value)} bytes, needs at least 20")
        self.name = name
        self.id, self.dim = struct.unpack_from("<II", value, 0)
        self.metric_code, self.element_type, self.shift, self.flags = struct.unpack_from("<BBBB", value, 8)
        self.rows, self.live_count = struct.unpack_from("<II", value, 12)
        self.record_len = len(value)
        self.reserved = value[20:]
        self.metric = METRICS.get(self.metric_code)
        self.id_levels = []  # id-run level counts (FORMAT.md §8.2), filled by load()
        # Filled by load():
        self.vectors = None  # (rows, dim) float32, stored form
        self.sq_norms = None  # (rows,) float32 trailer values
        self.block_rows = []
        self.live = None  # (rows,) bool
        self.docs = {}  # row -> dict(id, norm, text, metadata, metadata_raw)
        self.pca = None  # Projection of a reduced collection (Spec/PCA.md), or None


class Projection:
    """The `pca:<cid>` record of a reduced collection (Spec/PCA.md §2)."""

    def __init__(self, value):
        if len(value) < 20:
            raise ValueError(f"PCA record has {len(value)} bytes, the header alone needs 20")
        self.version, self.flags, reserved = struct.unpack_from("<BBH", value, 0)
        self.d, self.k, self.n = struct.unpack_from("<III", value, 4)
        (self.total,) = struct.unpack_from("<f", value, 16)
        if self.version != 1:
            raise ValueError(f"PCA record version {self.version} is unknown")
        if self.flags & ~3:
            raise ValueError(f"PCA flags {self.flags} have unknown bits")
        if not (2 <= self.d <= 65536 and 1 <= self.k < self.d):
            raise ValueError(f"PCA dimensions {self.d} -> {self.k} out of range")
        size = 20 + 4 * (self.d + self.k + self.k * self.d)
        if len(value) != size:
            raise ValueError(f"PCA record has {len(value)} bytes, {self.d} -> {self.k} needs {size}")
        f = np.frombuffer(value, dtype="<f4", offset=20).astype(np.float64)
        self.mean = f[: self.d]
        self.variance = f[self.d: self.d + self.k]
        self.w = f[self.d + self.k:].reshape(self.k, self.d)
        if not (np.isfinite(f).all() and np.isfinite(self.total)):
            raise ValueError("PCA record holds a non-finite value")
        if (self.variance < 0).any() or self.total < 0:
            raise ValueError("PCA record holds a negative variance")
        self.subtract_mean = bool(self.flags & 1)
        self.normalize_input = bool(self.flags & 2)

    def project(self, x):
        """Spec/PCA.md §3, steps 2-4 (the caller normalises again under cosine)."""
        x = np.asarray(x, dtype=np.float64)
        if self.normalize_input:
            x = x / np.linalg.norm(x)
        if self.subtract_mean:
            x = x - self.mean
        return self.w @ x


class Reader:
    def __init__(self, path):
        self.path = path
        self.faults = []
        self.notes = []
        self.checked = 0
        if not os.path.isfile(path):
            raise NotAStore(f"{path}: no such file (a store is a single file, opened with MDB_NOSUBDIR)")
        try:
            self.env = lmdb.open(path, subdir=False, readonly=True, lock=True, max_dbs=len(DATABASES) + 8,
                                 create=False)
        except lmdb.Error as e:
            # A read-only file system or an unwritable lock file: read without the lock (safe only when no
            # writer is active).
            self.notes.append(f"opened without the lock file ({e})")
            self.env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=len(DATABASES) + 8,
                                 create=False)
        self.dbs = {}
        # py-lmdb opens each handle in its own read transaction and commits it (LMDB keeps a handle
        # opened in a read transaction only if that transaction commits).
        for name in DATABASES:
            try:
                self.dbs[name] = self.env.open_db(name.encode(), create=False,
                                                  dupsort=name in DUP_DATABASES,
                                                  dupfixed=name in DUP_DATABASES)
            except lmdb.NotFoundError:
                raise NotAStore(f"{path}: no '{name}' database: not a vecstore store")
            except lmdb.IncompatibleError as e:
                raise NotAStore(f"{path}: database '{name}' has unexpected flags ({e})")
        for name in OPTIONAL_DATABASES:
            try:
                self.dbs[name] = self.env.open_db(name.encode(), create=False)
            except lmdb.NotFoundError:
                pass
        with self.env.begin() as txn:
            for name, db in self.dbs.items():
                flags = db.flags(txn)
                want_dup = name in DUP_DATABASES
                if bool(flags.get("dupsort")) != want_dup or bool(flags.get("dupfixed")) != want_dup:
                    self.fault(f"{name}: flags {flags} (expected dupsort={want_dup}, dupfixed={want_dup})")
                for f in ("integerkey", "integerdup", "reverse_key", "reverse_dup"):
                    if flags.get(f):
                        self.fault(f"{name}: unexpected flag {f}")

    def fault(self, msg):
        self.faults.append(msg)

    def load(self):
        """Reads everything from one snapshot: format, collections, and each collection's contents."""
        with self.env.begin(buffers=False) as txn:
            self.txn = txn
            self.check_meta(txn)
            for c in self.collections.values():
                self.load_collection(txn, c)
                # Spec/HNSW.md §6: the graph of an indexed collection, or no graph entries at all.
                ivf = self.ivf_records.pop(c.id, None)
                if ivf is None:
                    conformance_ivf.check_flat(self, txn, c)
                elif c.vectors is not None and len(c.vectors) == c.rows and c.live is not None:
                    self.checked += conformance_ivf.check_ivf(self, txn, c, ivf)
                header = self.hnsw_headers.pop(c.id, None)
                if header is None:
                    conformance_hnsw.check_flat(self, txn, c)
                elif c.vectors is not None and len(c.vectors) == c.rows:
                    self.checked += conformance_hnsw.check_graph(self, txn, c, header)
            for cid in self.hnsw_headers:
                self.fault(f"meta: HNSW header of unknown collection id {cid}")
            for cid in self.ivf_records:
                self.fault(f"meta: IVF record of unknown collection id {cid}")
            for cid in self.idrun_records:
                self.fault(f"meta: id-run record of unknown collection id {cid}")
            self.check_orphans(txn)
            self.txn = None

    def check_meta(self, txn):
        self.hnsw_headers = {}
        self.ivf_records = {}
        self.idrun_records = {}
        meta = self.dbs["meta"]
        fmt = txn.get(META_FORMAT, db=meta)
        if fmt is None:
            raise NotAStore(f"{self.path}: no 'format' record in meta: not a vecstore store")
        if len(fmt) < 12 or fmt[:8] != MAGIC:
            raise NotAStore(f"{self.path}: 'format' record does not start with VECSTORE: not a vecstore store")
        version = read_le32(fmt, 8)
        if not SUPPORTED_VERSION <= version <= MAX_READ_VERSION:
            raise Unsupported(f"{self.path}: format version {version} is not supported "
                              f"(this reader reads versions {SUPPORTED_VERSION} to {MAX_READ_VERSION})")
        self.version = version
        write_version = read_le32(fmt, 12) if len(fmt) >= 16 else 0
        if len(fmt) != 16 or (write_version != 0 and write_version <= version):
            self.fault(f"meta format: writer should write 16 bytes, the write version 0 or above the read "
                       f"version, found {fmt.hex()}")
        self.feature_prefixes = []
        self.features = set()
        feats = txn.get(META_FEATURES, db=meta)
        if feats is not None:
            if version < 3:
                self.fault("meta: a features record in a version-2 store (declaring one sets version 3)")
            n, o = feats[0], 1
            for _ in range(n):
                flags, length = feats[o], feats[o + 1]
                name = feats[o + 2:o + 2 + length].decode()
                o += 2 + length
                if flags & ~3:
                    self.fault(f"meta features: flags {flags} of {name!r}")
                if name not in KNOWN_FEATURES and flags & 1:
                    raise Unsupported(f"{self.path}: feature {name!r} is needed to read it")
                self.feature_prefixes.append((name + ":").encode())
                self.features.add(name)
            if o != len(feats):
                self.fault("meta features: trailing bytes")
        self.collections = {}
        self.next_collection_id = None
        self.superseded = None
        ids = {}
        pca_records = {}
        cur = txn.cursor(db=meta)
        for key, value in cur:
            self.checked += 1
            if key == META_FORMAT:
                continue
            if key == META_NEXT_COLLECTION:
                if len(value) != 4:
                    self.fault(f"meta next-collection-id has {len(value)} bytes, expected 4")
                else:
                    self.next_collection_id = read_le32(value)
            elif key == META_SUPERSEDED:
                self.superseded = value.decode("utf-8", "replace")
            elif key.startswith(META_COLLECTION_PREFIX):
                try:
                    name = key[len(META_COLLECTION_PREFIX):].decode("utf-8")
                except UnicodeDecodeError:
                    self.fault(f"meta: collection name {key!r} is not UTF-8")
                    continue
                try:
                    c = Collection(name, value)
                except ValueError as e:
                    self.fault(str(e))
                    continue
                if c.metric is None:
                    self.fault(f"collection {name}: unknown metric code {c.metric_code}")
                    continue
                if c.element_type != 0:
                    self.fault(f"collection {name}: element type {c.element_type} (only 0 = float32 in v1)")
                    continue
                if c.dim <= 0 or not (6 <= c.shift <= 20):
                    self.fault(f"collection {name}: dimension {c.dim} / block shift {c.shift} out of range")
                    continue
                if c.record_len != 24 or any(c.reserved):
                    self.fault(f"collection {name}: writer should write 24 bytes with reserved u32 = 0")
                if c.flags != 0:
                    self.fault(f"collection {name}: flags byte {c.flags} (v1 writers write 0)")
                if c.shift != expected_block_shift(c.dim):
                    self.fault(f"collection {name}: block shift {c.shift}, the rule gives {expected_block_shift(c.dim)}")
                if c.live_count > c.rows:
                    self.fault(f"collection {name}: live count {c.live_count} > rows {c.rows}")
                if c.id in ids:
                    self.fault(f"collections {ids[c.id]} and {name} share id {c.id}")
                ids[c.id] = name
                self.collections[name] = c
            elif key.startswith(b"hnsw:") and len(key) == 9:
                # Format v2: the HNSW header of a collection; its graph is checked per collection
                # (Tools/conformance_hnsw.py, Spec/HNSW.md §6).
                self.hnsw_headers[struct.unpack_from(">I", key, 5)[0]] = value
            elif key.startswith(b"ivf:") and len(key) == 8:
                # An IVF-Flat / IVF-PQ index (Spec/IVF.md); its lists are checked per collection
                # (Tools/conformance_ivf.py).
                self.ivf_records[struct.unpack_from(">I", key, 4)[0]] = value
            elif key.startswith(b"pca:") and len(key) == 8:
                pca_records[struct.unpack_from(">I", key, 4)[0]] = value
            elif key.startswith(b"embedder:") and len(key) == 13:
                # The text-embedding model of a collection (Spec/EMBEDDER.md); it changes no other byte.
                pass
            elif key.startswith(META_IDRUNS_PREFIX) and len(key) == len(META_IDRUNS_PREFIX) + 4:
                # The id runs of a collection (FORMAT.md §8.2), decoded with its collection.
                if "idruns" not in self.features:
                    self.fault("meta: an id-run record, but the store does not declare feature 'idruns'")
                self.idrun_records[read_be32(key, len(META_IDRUNS_PREFIX))] = value
            elif key == META_FEATURES or any(key.startswith(p) for p in self.feature_prefixes):
                pass  # checked above / a declared feature's record
            else:
                self.fault(f"meta: unknown key {key!r}")
        by_id = {c.id: c for c in self.collections.values()}
        for cid, value in pca_records.items():
            c = by_id.get(cid)
            if c is None:
                self.fault(f"meta: PCA record of unknown collection id {cid}")
                continue
            try:
                p = Projection(value)
            except ValueError as e:
                self.fault(f"collection {c.name}: {e}")
                continue
            c.pca = p
            if p.k != c.dim:
                self.fault(f"collection {c.name}: PCA projects to {p.k} dimensions, the collection has {c.dim}")
            gram = p.w @ p.w.T
            if np.abs(gram - np.eye(p.k)).max() > 1e-3:
                self.fault(f"collection {c.name}: PCA components are not orthonormal")
            if p.normalize_input != (c.metric == "cosine"):
                self.fault(f"collection {c.name}: PCA NORMALIZE_INPUT flag does not match metric {c.metric}")
        if self.next_collection_id is None:
            self.fault("meta: no next-collection-id record")
        elif ids and self.next_collection_id <= max(ids):
            self.fault(f"meta: next-collection-id {self.next_collection_id} is not above every collection id {max(ids)}")

    def prefix_items(self, txn, dbname, prefix):
        cur = txn.cursor(db=self.dbs[dbname])
        if not cur.set_range(prefix):
            return
        for key, value in cur:  # iterates every duplicate too, for dupsort databases
            if not key.startswith(prefix):
                break
            yield key, value

    def load_collection(self, txn, c):
        name, dim, cid = c.name, c.dim, c.id
        prefix = be32(cid)
        c.id_levels = self.id_levels(c, self.idrun_records.pop(cid, None))
        row_bytes = (dim + 1) * 4
        capacity = 1 << c.shift
        # Vector blocks: a cursor walk from the collection prefix.
        parts_v, parts_n = [], []
        expected = 0
        ok = True
        for key, value in self.prefix_items(txn, "vectors", prefix):
            self.checked += 1
            if len(key) != 8:
                self.fault(f"{name}: vectors key {key.hex()} is not 8 bytes")
                ok = False
                continue
            block = read_be32(key, 4)
            if block != expected:
                self.fault(f"{name}: vector block {expected} missing (found {block})")
                ok = False
                break
            if len(value) == 0 or len(value) % row_bytes or len(value) // row_bytes > capacity:
                self.fault(f"{name}: vector block {block} has {len(value)} bytes (row {row_bytes} B, capacity {capacity})")
                ok = False
                break
            n = len(value) // row_bytes
            floats = np.frombuffer(value, dtype="<f4")
            parts_v.append(floats[: n * dim].reshape(n, dim))
            parts_n.append(floats[n * dim:])
            c.block_rows.append(n)
            expected += 1
        if ok:
            if sum(c.block_rows) != c.rows:
                self.fault(f"{name}: {sum(c.block_rows)} vector rows stored, record says {c.rows}")
            if any(n != capacity for n in c.block_rows[:-1]):
                self.fault(f"{name}: a block other than the last is not full: {c.block_rows}")
        c.vectors = np.concatenate(parts_v) if parts_v else np.zeros((0, dim), dtype="<f4")
        c.sq_norms = np.concatenate(parts_n) if parts_n else np.zeros(0, dtype="<f4")
        rows = c.rows
        # Live bitmap.
        bits = np.zeros(max(rows, 0), dtype=bool)
        for key, value in self.prefix_items(txn, "live", prefix):
            self.checked += 1
            if len(key) != 8 or len(value) != LIVE_BLOCK_BYTES:
                self.fault(f"{name}: live entry {key.hex()} has a {len(key)}-byte key / {len(value)}-byte value")
                continue
            base = read_be32(key, 4) * LIVE_BLOCK_IDS
            b = np.unpackbits(np.frombuffer(value, dtype=np.uint8), bitorder="little").astype(bool)
            set_rows = np.nonzero(b)[0] + base
            if len(set_rows) and set_rows[-1] >= rows:
                self.fault(f"{name}: live bit set for row {int(set_rows[-1])} >= rows {rows}")
            set_rows = set_rows[set_rows < rows]
            bits[set_rows] = True
        c.live = bits
        if int(bits.sum()) != c.live_count:
            self.fault(f"{name}: live bitmap has {int(bits.sum())} rows, record says {c.live_count}")
        # Rows: finite, trailer = squared norm, unit length under cosine for live rows.
        if len(c.vectors) == rows and rows:
            v64 = c.vectors.astype(np.float64)
            if not np.all(np.isfinite(v64)):
                self.fault(f"{name}: non-finite vector component")
            n2 = np.einsum("ij,ij->i", v64, v64)
            bad = np.nonzero(np.abs(n2 - c.sq_norms.astype(np.float64)) > 1e-4 * np.maximum(1, n2))[0]
            for r in bad[:5]:
                self.fault(f"{name}: row {r} stored squared norm {c.sq_norms[r]} != {n2[r]}")
            if c.metric == "cosine":
                bad = np.nonzero(c.live & (np.abs(n2 - 1) > 1e-3))[0]
                for r in bad[:5]:
                    self.fault(f"{name}: live row {r} is not unit length under cosine (|v|^2 = {n2[r]})")
            self.checked += rows
        # Documents.
        expected_fields = set()
        for key, value in self.prefix_items(txn, "docs", prefix):
            self.checked += 1
            if len(key) != 8:
                self.fault(f"{name}: docs key {key.hex()} is not 8 bytes")
                continue
            row = read_be32(key, 4)
            if row >= rows or not bits[row]:
                self.fault(f"{name}: document at row {row}, which is not live")
            try:
                doc = decode_doc(value)
            except ValueError as e:
                self.fault(f"{name}: docs row {row}: {e}")
                continue
            c.docs[row] = doc
            found = self.id_places(txn, c, doc["id"])
            if not found:
                self.fault(f"{name}: id {doc['id']!r} (row {row}) missing from the id map")
            elif len(found) > 1:
                self.fault(f"{name}: id {doc['id']!r} is in {len(found)} places ({', '.join(p for p, _ in found)})")
            for place, mapped in found:
                if len(mapped) != 4 or read_le32(mapped) != row:
                    self.fault(f"{name}: id {doc['id']!r} maps to {mapped.hex()} in {place}, stored at row {row}")
            if not isinstance(doc["metadata"], dict):
                self.fault(f"{name}: row {row} metadata is not a JSON object")
                continue
            for k in field_keys(cid, doc["metadata"]):
                expected_fields.add(k + be32(row))
        if len(c.docs) != c.live_count:
            self.fault(f"{name}: {len(c.docs)} documents, record says {c.live_count} live")
        # Id map: every entry of the base and of the runs points at a document with that id, and each run
        # level holds exactly its recorded count (FORMAT.md §8).
        n_ids = 0
        entries = [("ids", key[4:], value) for key, value in self.prefix_items(txn, "ids", prefix)]
        per_level = {}
        if "idruns" in self.dbs:
            for key, value in self.prefix_items(txn, "idruns", prefix):
                if len(key) < 6:
                    self.fault(f"{name}: idruns key {key.hex()} has no level and id")
                    continue
                per_level[key[4]] = per_level.get(key[4], 0) + 1
                entries.append((f"idruns level {key[4]}", key[5:], value))
        for level in sorted(set(per_level) | set(range(len(c.id_levels)))):
            recorded = c.id_levels[level] if level < len(c.id_levels) else 0
            if per_level.get(level, 0) != recorded:
                self.fault(f"{name}: id run level {level} holds {per_level.get(level, 0)} ids, its record says {recorded}")
        for where, ident, value in entries:
            self.checked += 1
            n_ids += 1
            if len(value) != 4:
                self.fault(f"{name}: {where} entry {ident!r} has {len(value)} bytes")
                continue
            row = read_le32(value)
            doc = c.docs.get(row)
            if doc is None or doc["id"].encode("utf-8") != ident:
                self.fault(f"{name}: {where} entry {ident!r} -> row {row}, which holds no such document")
        if n_ids != len(c.docs):
            self.fault(f"{name}: {n_ids} id-map entries for {len(c.docs)} documents")
        # Field index: exactly the entries the metadata implies.
        actual = set()
        for key, value in self.prefix_items(txn, "fields", prefix):
            self.checked += 1
            if len(value) != 4:
                self.fault(f"{name}: fields value of {key!r} has {len(value)} bytes, expected 4")
            actual.add(key + value)
        for e in sorted(actual - expected_fields)[:5]:
            self.fault(f"{name}: field-index entry {e!r} not backed by metadata")
        for e in sorted(expected_fields - actual)[:5]:
            self.fault(f"{name}: field-index entry {e!r} missing")
        if actual != expected_fields:
            self.fault(f"{name}: field index has {len(actual)} entries, metadata implies {len(expected_fields)}")

    def id_levels(self, c, value):
        """The level counts of an id-run record (FORMAT.md §8.2); faults and [] when it does not decode."""
        if value is None:
            return []
        if len(value) < 4 or value[0] != 1 or value[2:4] != b"\0\0":
            self.fault(f"{c.name}: id-run record {value[:4].hex()}… is not version 1 with zero reserved bytes")
            return []
        n = value[1]
        if not 1 <= n <= IDRUNS_MAX_LEVELS or len(value) != 4 + 4 * n:
            self.fault(f"{c.name}: id-run record names {n} levels in {len(value)} bytes")
            return []
        levels = list(struct.unpack_from(f"<{n}I", value, 4))
        if levels[-1] == 0:
            self.fault(f"{c.name}: id-run record's last level is empty")
        if sum(levels) > c.live_count:
            self.fault(f"{c.name}: id runs count {sum(levels)} ids, more than {c.live_count} live documents")
        return levels

    def id_places(self, txn, c, ident):
        """Every (place, value) holding external id `ident`: the run levels with a non-zero count, newest
        first, then the base (FORMAT.md §8.2). A valid store has exactly one."""
        raw = ident.encode("utf-8")
        found = []
        for level, count in enumerate(c.id_levels):
            if count and "idruns" in self.dbs:
                v = txn.get(be32(c.id) + bytes([level]) + raw, db=self.dbs["idruns"])
                if v is not None:
                    found.append((f"run level {level}", v))
        v = txn.get(be32(c.id) + raw, db=self.dbs["ids"])
        if v is not None:
            found.append(("the base", v))
        return found

    def lookup(self, txn, c, ident):
        """The row of external id `ident`, or None (FORMAT.md §16 step 7)."""
        found = self.id_places(txn, c, ident)
        return read_le32(found[0][1]) if found and len(found[0][1]) == 4 else None

    def check_orphans(self, txn):
        known = {c.id for c in self.collections.values()}
        for dbname in DATABASES[1:] + [d for d in OPTIONAL_DATABASES if d in self.dbs]:
            cur = txn.cursor(db=self.dbs[dbname])
            ok = cur.first()
            while ok:
                key = cur.key()
                if len(key) < 4:
                    self.fault(f"{dbname}: key {key!r} shorter than a collection id")
                    ok = cur.next_nodup()
                    continue
                cid = read_be32(key)
                if cid not in known:
                    self.fault(f"{dbname}: keys of unknown collection id {cid}")
                    if cid == 0xFFFFFFFF:
                        break
                    ok = cur.set_range(be32(cid + 1))
                else:
                    ok = cur.set_range(be32(cid + 1)) if cid < 0xFFFFFFFF else False

    # Decoded documents --------------------------------------------------------------------------

    def documents(self, c):
        """Live documents in row order, with vectors as given (cosine rows rescaled by their norm)."""
        out = []
        for row in range(c.rows):
            if not c.live[row]:
                continue
            d = c.docs.get(row)
            if d is None:
                continue
            v = c.vectors[row].astype(np.float64)
            if c.metric == "cosine":
                v = v * float(d["norm"])
            out.append({"row": row, "id": d["id"], "vector": v, "text": d["text"], "metadata": d["metadata"]})
        return out


def decode_doc(b):
    """A `docs` value (Spec §Document record)."""
    if len(b) < 2:
        raise ValueError("record shorter than its id length")
    n = struct.unpack_from("<H", b, 0)[0]
    off = 2
    if off + n + 12 > len(b):
        raise ValueError(f"record of {len(b)} bytes too short for id of {n} bytes")
    ext_id = b[off:off + n].decode("utf-8")
    off += n
    norm = struct.unpack_from("<f", b, off)[0]
    off += 4
    tlen = read_le32(b, off)
    off += 4
    text = None
    if tlen != NO_TEXT:
        if off + tlen + 4 > len(b):
            raise ValueError("text runs past the record")
        text = b[off:off + tlen].decode("utf-8")
        off += tlen
    if off + 4 > len(b):
        raise ValueError("no metadata length")
    mlen = read_le32(b, off)
    off += 4
    if off + mlen != len(b):
        raise ValueError(f"metadata length {mlen} does not end the record ({len(b) - off} bytes left)")
    raw = b[off:off + mlen]
    metadata = json.loads(raw.decode("utf-8")) if mlen else {}
    return {"id": ext_id, "norm": norm, "text": text, "metadata": metadata, "metadata_raw": raw}


# ---------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------


def norm_meta(v):
    """Metadata for comparison: numbers as floats (the store keeps doubles)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [norm_meta(x) for x in v]
    if isinstance(v, dict):
        return {k: norm_meta(x) for k, x in v.items()}
    return v


def check_against(reader, c, path, rtol):
    """Compares the collection's documents with a JSONL file (the final state expected)."""
    problems = []
    expected = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            expected[obj["id"]] = obj  # later lines replace earlier ones, as an import upserts
    docs = {d["id"]: d for d in reader.documents(c)}
    for missing in sorted(set(expected) - set(docs))[:10]:
        problems.append(f"id {missing!r} in {path} but not in the store")
    for extra in sorted(set(docs) - set(expected))[:10]:
        problems.append(f"id {extra!r} in the store but not in {path}")
    # Lookup by id through the id index (base and runs, FORMAT.md §8.2) finds each document's row.
    with reader.env.begin(buffers=False) as txn:
        for id_ in expected:
            got = docs.get(id_)
            row = reader.lookup(txn, c, id_)
            if got is not None and row != got["row"]:
                problems.append(f"{id_!r}: the id index gives row {row}, the document is at row {got['row']}")
    for i, (id_, want) in enumerate(expected.items()):
        got = docs.get(id_)
        if got is None:
            continue
        wv = np.asarray(want["vector"], dtype=np.float64)
        gv = got["vector"]
        if wv.shape != gv.shape:
            problems.append(f"{id_!r}: dimension {gv.shape} != {wv.shape}")
        else:
            scale = max(float(np.max(np.abs(wv))), 1e-30)
            err = float(np.max(np.abs(gv - wv)))
            if err > rtol * scale:
                problems.append(f"{id_!r}: vector differs by {err:.3g} (> {rtol} x {scale:.3g})")
        want_text = want.get("text")
        if want_text == "":
            want_text = None  # the JSONL importer treats an empty text field as absent
        if got["text"] != want_text:
            problems.append(f"{id_!r}: text {got['text']!r} != {want_text!r}")
        want_meta = want.get("metadata") or {}
        if norm_meta(got["metadata"]) != norm_meta(want_meta):
            problems.append(f"{id_!r}: metadata {got['metadata']!r} != {want_meta!r}")
    return problems, len(expected)


def read_queries(path):
    if path.endswith(".fvecs"):
        data = open(path, "rb").read()
        out, off = [], 0
        while off < len(data):
            d = struct.unpack_from("<i", data, off)[0]
            off += 4
            out.append(np.frombuffer(data, dtype="<f4", count=d, offset=off).astype(np.float64))
            off += 4 * d
        return out
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            vec = obj["vector"] if isinstance(obj, dict) else obj
            out.append(np.asarray(vec, dtype=np.float64))
    return out


def check_queries(reader, c, queries, expect_path, k, tol):
    """Exact brute-force top-k over the stored vectors vs the CLI's `query --format jsonl` output."""
    problems = []
    docs = reader.documents(c)
    rows = np.array([d["row"] for d in docs], dtype=np.int64)
    ids = [d["id"] for d in docs]
    m = c.vectors[rows].astype(np.float64) if len(rows) else np.zeros((0, c.dim))
    higher_better = c.metric != "l2"
    results = []
    with open(expect_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                results.append(json.loads(line))
    if len(results) != len(queries):
        problems.append(f"{expect_path}: {len(results)} result lines for {len(queries)} queries")
    by_query = {int(r["query"]): r["results"] for r in results}
    for qi, q in enumerate(queries):
        got = by_query.get(qi)
        if got is None:
            problems.append(f"query {qi}: no result line")
            continue
        if c.pca is not None and len(q) == c.pca.d:
            q = c.pca.project(q)  # a reduced collection projects queries of the input dimension
        if c.metric == "cosine":
            q = q / np.linalg.norm(q)
            scores = m @ q
        elif c.metric == "dot":
            scores = m @ q
        else:
            diff = m - q
            scores = np.einsum("ij,ij->i", diff, diff)
        exact = dict(zip(ids, scores.tolist()))
        order = np.argsort(-scores if higher_better else scores, kind="stable")
        n = min(k, len(ids))
        if len(got) != n:
            problems.append(f"query {qi}: {len(got)} results, expected {n}")
            continue
        if n == 0:
            continue
        kth = float(scores[order[n - 1]])

        def t(s):
            return tol * max(1.0, abs(s))

        def better(a, b):  # a strictly better than b beyond tolerance
            return a > b + t(b) if higher_better else a < b - t(b)

        seen = set()
        prev = None
        for rank, hit in enumerate(got):
            hid, hs = hit["id"], float(hit["score"])
            if hid in seen:
                problems.append(f"query {qi}: id {hid!r} twice")
            seen.add(hid)
            if hid not in exact:
                problems.append(f"query {qi} rank {rank}: id {hid!r} is not a live document")
                continue
            e = exact[hid]
            if abs(hs - e) > t(e):
                problems.append(f"query {qi} rank {rank}: {hid!r} reported score {hs} != exact {e}")
            if better(kth, e):
                problems.append(f"query {qi} rank {rank}: {hid!r} (score {e}) is worse than the k-th best {kth}")
            if prev is not None and better(hs, prev):
                problems.append(f"query {qi} rank {rank}: results not ordered best first")
            prev = hs
        for j in order[:n]:
            if better(float(scores[j]), kth) and ids[j] not in seen:
                problems.append(f"query {qi}: {ids[j]!r} (score {float(scores[j])}) belongs in the top {k} but is missing")
    return problems


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description="Independent conformance reader for vecstore stores (format v1).")
    p.add_argument("store", help="store file")
    p.add_argument("-c", "--collection", help="collection for --dump/--check-against/--expect "
                   "(default: the only collection)")
    p.add_argument("--dump", action="store_true", help="print the collection's decoded documents as JSONL")
    p.add_argument("--check-against", metavar="JSONL", help="compare decoded documents with this JSONL")
    p.add_argument("--rtol", type=float, default=1e-5, help="relative vector tolerance (default 1e-5)")
    p.add_argument("--query-file", metavar="FVECS", help="query vectors (.fvecs, or .jsonl)")
    p.add_argument("--queries", metavar="JSONL", help="query vectors as JSONL ({\"vector\": [...]})")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--expect", metavar="RESULTS", help="`vecstore query --format jsonl` output to check")
    p.add_argument("--score-tol", type=float, default=1e-5, help="score tolerance (relative, min 1 absolute)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)

    def say(msg):
        if not a.quiet:
            print(msg, file=sys.stderr if a.dump else sys.stdout)

    try:
        reader = Reader(a.store)
        reader.load()
    except (NotAStore, Unsupported) as e:
        print(f"conformance: REFUSED: {e}", file=sys.stderr)
        return 3
    except (OSError, lmdb.Error) as e:
        print(f"conformance: cannot read {a.store}: {e}", file=sys.stderr)
        return 2
    for n in reader.notes:
        say(f"note: {n}")
    if reader.superseded is not None:
        say(f"note: this file was superseded by compaction (the live store is {reader.superseded})")
    say(f"{a.store}: format version {reader.version}, {len(reader.collections)} collection(s)")
    for c in sorted(reader.collections.values(), key=lambda c: c.id):
        say(f"  {c.name!r}: id {c.id}, dim {c.dim}, {c.metric}, block {1 << c.shift} rows "
            f"({len(c.block_rows)} blocks), rows {c.rows}, live {c.live_count}")
    failures = [f"invariant: {f}" for f in reader.faults]

    needs_collection = a.dump or a.check_against or a.expect or a.query_file or a.queries
    if needs_collection:
        name = a.collection
        if name is None:
            if len(reader.collections) != 1:
                print("conformance: several collections; choose one with -c", file=sys.stderr)
                return 2
            name = next(iter(reader.collections))
        c = reader.collections.get(name)
        if c is None:
            print(f"conformance: no collection {name!r}", file=sys.stderr)
            return 2
        if a.dump:
            for d in reader.documents(c):
                rec = {"id": d["id"], "vector": [float(x) for x in d["vector"]]}
                if d["text"] is not None:
                    rec["text"] = d["text"]
                if d["metadata"]:
                    rec["metadata"] = d["metadata"]
                print(json.dumps(rec, ensure_ascii=False))
        if a.check_against:
            problems, n = check_against(reader, c, a.check_against, a.rtol)
            failures += [f"check-against: {x}" for x in problems]
            say(f"  check-against {a.check_against}: {n} expected documents, {len(problems)} problem(s)")
        qfile = a.query_file or a.queries
        if qfile or a.expect:
            if not (qfile and a.expect):
                print("conformance: --query-file/--queries and --expect go together", file=sys.stderr)
                return 2
            queries = read_queries(qfile)
            problems = check_queries(reader, c, queries, a.expect, a.k, a.score_tol)
            failures += [f"queries: {x}" for x in problems]
            say(f"  queries {qfile}: {len(queries)} queries, k={a.k}, {len(problems)} problem(s)")

    if failures:
        for f in failures[:50]:
            print(f"FAIL {f}", file=sys.stderr)
        if len(failures) > 50:
            print(f"... and {len(failures) - 50} more", file=sys.stderr)
        print(f"conformance: {a.store}: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    say(f"conformance: OK ({reader.checked} entries checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
