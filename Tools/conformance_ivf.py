"""IVF-Flat / IVF-PQ checks of Tools/conformance.py, written from Spec/IVF.md and Spec/PQ.md alone: the
`ivf:<cid>` record (§2, §2.1), centroids (§3), PQ codebooks (PQ §2), list blocks (§4, codes PQ §3), and the
ADC arithmetic (PQ §4): every decoded code is rebuilt as c + r̂ (residual codes) or x̂ (codes of the raw
vectors, header flags bit 0 clear, feature `ivf-pq-raw`) and its ADC value, computed from look-up tables, is
compared with the distance to the rebuilt vector. Reads the `ivf` and `ivf-lists` databases with
py-lmdb and numpy; no vecstore code."""

import struct

import numpy as np

IVF_DATABASES = ["ivf", "ivf-lists"]
KINDS = {1: "flat", 2: "pq8", 3: "pq4", 4: "pq4-fastscan"}


def decode_header(value):
    """The 64-byte trained header (IVF §2) as a dict, or the 32-byte parameters record (§2.1) as
    {"pending": True, ...}; raises ValueError."""
    if len(value) == 32:
        version, kind, metric, r0, nlist, m, bits, r1, train_at = struct.unpack_from("<BBBBIHBBI", value, 0)
        # Byte 3 bit 0: PQ codes of the raw vectors (0 for flat and residual codes).
        if version != 1 or r0 > 1 or (r0 and kind == 1) or r1 or kind not in (1, 2, 4) or train_at < 1:
            raise ValueError("IVF parameters record: bad version, kind, flags, reserved byte or threshold")
        return dict(pending=True, kind=kind, metric=metric, nlist=nlist, m=m, bits=bits, raw=bool(r0))
    if len(value) != 64:
        raise ValueError(f"IVF record has {len(value)} bytes, not 64 or 32")
    version, kind, metric, flags, nlist, dim, m, bits, defaults, cap, nprobe, refine = struct.unpack_from(
        "<BBBBIIHBBIHH", value, 0)
    seed, coarse_err, code_err, train_rows, iters, reserved = struct.unpack_from("<QddIIQ", value, 24)
    # flags bit 0: residual codes (PQ kinds may clear it: codes of the raw vectors); flat has 0.
    if version != 1 or kind not in KINDS or flags > 1 or (kind == 1 and flags) or defaults & 0xF0 or reserved:
        raise ValueError("IVF header: bad version, kind, flags, defaults or reserved field")
    if not (1 <= nlist <= 65536 and 1 <= dim <= 65535 and cap % 32 == 0 and 32 <= cap <= 65536):
        raise ValueError("IVF header: nlist, dimension or block capacity out of range")
    if kind == 1 and (m or bits):
        raise ValueError("IVF header: flat index with M or bits")
    if kind != 1 and (not 1 <= m <= 256 or dim % m or bits != (8 if kind == 2 else 4)):
        raise ValueError("IVF header: M / bits do not fit the kind")
    if not 1 <= nprobe <= min(nlist, 65535):
        raise ValueError("IVF header: default nprobe out of range")
    if not (np.isfinite(coarse_err) and coarse_err >= 0 and np.isfinite(code_err) and code_err >= 0):
        raise ValueError("IVF header: training errors not finite and non-negative")
    return dict(pending=False, kind=kind, metric=metric, nlist=nlist, dim=dim, m=m, bits=bits, cap=cap,
                code_err=code_err, residual=bool(flags))


def payload_bytes(kind, n, width):
    if kind == 1:
        return 4 * n * width
    if kind == 2:
        return n * width
    if kind == 3:
        return n * ((width + 1) // 2)
    return ((n + 31) // 32) * ((width + 1) // 2) * 32


def decode_codes(kind, payload, n, m):
    """(n, m) integer codes of a PQ block (PQ §3.1–3.3)."""
    p = np.frombuffer(payload, dtype=np.uint8)
    if kind == 2:
        return p.reshape(n, m).astype(np.int64)
    codes = np.zeros((n, m), dtype=np.int64)
    if kind == 3:
        rows = p.reshape(n, (m + 1) // 2)
        for j in range(m):
            codes[:, j] = (rows[:, j // 2] >> (4 * (j % 2))) & 15
        return codes
    pairs = (m + 1) // 2
    blocks = p.reshape(-1, pairs, 2, 16)  # block, pair, half h, lane i
    for r in range(n):
        b, i = divmod(r, 32)
        lane, shift = i % 16, (0 if i < 16 else 4)
        for j in range(m):
            codes[r, j] = (blocks[b, j // 2, j % 2, lane] >> shift) & 15
    return codes


def check_ivf(reader, txn, c, value):
    """Checks collection `c` (decoded by conformance.py: c.vectors, c.live) against Spec/IVF.md §8 and the ADC
    arithmetic of Spec/PQ.md §4. Returns the number of checked items."""
    name, cid, fault = c.name, c.id, reader.fault
    prefix = struct.pack(">I", cid)
    try:
        h = decode_header(value)
    except ValueError as e:
        fault(f"{name}: {e}")
        return 0
    if h["metric"] != c.metric_code:
        fault(f"{name}: IVF metric {h['metric']} differs from the collection's {c.metric_code}")
    if (h["raw"] if h["pending"] else (h["kind"] != 1 and not h["residual"])) and "ivf-pq-raw" not in reader.features:
        fault(f"{name}: IVF-PQ codes of the raw vectors without the ivf-pq-raw feature")
    if h["pending"]:
        for db in (d for d in IVF_DATABASES if d in reader.dbs):
            for _ in reader.prefix_items(txn, db, prefix):
                fault(f"{name}: {db} entries of an IVF index that is not trained")
                break
        return 1
    if any(db not in reader.dbs for db in IVF_DATABASES):
        fault(f"{name}: an IVF record in a store without the ivf databases")
        return 1
    dim, nlist, kind, m = h["dim"], h["nlist"], h["kind"], h["m"]
    if dim != c.dim:
        fault(f"{name}: IVF dimension {dim} differs from the collection's {c.dim}")
        return 1
    ivf = reader.dbs["ivf"]
    raw = txn.get(prefix + b"\x00", db=ivf)
    if raw is None or len(raw) != 4 * nlist * dim:
        fault(f"{name}: IVF centroids missing or of the wrong length")
        return 1
    cents = np.frombuffer(raw, dtype="<f4").reshape(nlist, dim)
    if not np.isfinite(cents).all():
        fault(f"{name}: IVF centroid not finite")
    books = None
    if kind != 1:
        ksub, dsub = 1 << h["bits"], dim // m
        raw = txn.get(prefix + b"\x01", db=ivf)
        if raw is None or len(raw) != 4 * dim * ksub:
            fault(f"{name}: PQ codebooks missing or of the wrong length")
            return 1
        books = np.frombuffer(raw, dtype="<f4").reshape(m, ksub, dsub)
        if not np.isfinite(books).all():
            fault(f"{name}: PQ codebook value not finite")
    width = dim if kind == 1 else m
    seen = np.zeros(c.rows, dtype=np.int64)
    listed_rows, listed_lists, listed_codes = [], [], []
    expect = {}
    short = set()
    checked = 0
    for key, val in reader.prefix_items(txn, "ivf-lists", prefix):
        checked += 1
        if len(key) != 12:
            fault(f"{name}: ivf-lists key of {len(key)} bytes")
            continue
        lst, blk = struct.unpack_from(">II", key, 4)
        if lst >= nlist or blk != expect.get(lst, 0):
            fault(f"{name}: IVF list {lst} block {blk} out of order or beyond nlist")
            continue
        if lst in short:
            fault(f"{name}: IVF list {lst} block {blk - 1} is not full but not the last")
        expect[lst] = blk + 1
        if len(val) < 16:
            fault(f"{name}: IVF list {lst} block {blk} shorter than its header")
            continue
        version, bkind, bwidth, blist, n, reserved = struct.unpack_from("<BBHIII", val, 0)
        off = (16 + 4 * n + 15) // 16 * 16
        if (version, bkind, bwidth, blist, reserved) != (1, kind, width, lst, 0) or not 1 <= n <= h["cap"] \
                or len(val) != off + payload_bytes(kind, n, width) or any(val[16 + 4 * n:off]):
            fault(f"{name}: IVF list {lst} block {blk}: header, length or padding wrong")
            continue
        rows = np.frombuffer(val, dtype="<u4", count=n, offset=16).astype(np.int64)
        if (np.diff(rows) <= 0).any() or rows.max() >= c.rows:
            fault(f"{name}: IVF list {lst} block {blk}: row ids not ascending or beyond the rows")
            continue
        seen[rows] += 1
        if n < h["cap"]:
            short.add(lst)
        payload = val[off:]
        if kind == 1:
            vecs = np.frombuffer(payload, dtype="<f4").reshape(n, dim)
            if not np.array_equal(vecs, c.vectors[rows]):
                fault(f"{name}: IVF list {lst} block {blk}: vectors differ from the stored rows")
        else:
            listed_rows.append(rows)
            listed_lists.append(np.full(n, lst))
            listed_codes.append(decode_codes(kind, payload, n, m))
    live = c.live
    if (seen[live] != 1).any():
        fault(f"{name}: a live row is in no IVF list or in more than one")
    if (seen[~live] > 1).any():
        fault(f"{name}: a deleted row is in more than one IVF list")
    if books is None or not listed_rows:
        return checked + c.rows
    rows = np.concatenate(listed_rows)
    lists = np.concatenate(listed_lists)
    codes = np.concatenate(listed_codes)
    # Rebuild x̂ = c_l + r̂ (residual codes) or x̂ = the decoded code (raw-vector codes) (PQ §1) and compare the
    # reconstruction error with the recorded training error.
    residual = h["residual"]
    offset = cents[lists] if residual else np.zeros((len(rows), dim), dtype=np.float32)
    residual_hat = np.concatenate([books[j][codes[:, j]] for j in range(m)], axis=1)
    x_hat = offset + residual_hat
    err = float(((c.vectors[rows] - x_hat) ** 2).sum(axis=1).mean())
    # Each code is the nearest codebook entry of its residual's (or vector's) sub-vector (PQ §1; ties either way).
    resid = (c.vectors[rows] - offset).reshape(len(rows), m, dim // m)
    for j in range(m):
        d = ((resid[:, j, None, :] - books[j][None, :, :]) ** 2).sum(axis=2)
        stored = d[np.arange(len(rows)), codes[:, j]]
        bad = np.nonzero(stored > d.min(axis=1) + 1e-4 * (1 + (resid[:, j] ** 2).sum(axis=1)))[0]
        if len(bad):
            fault(f"{name}: row {rows[bad[0]]}'s PQ code {j} is not the nearest codebook entry of its residual")
            break
    if err > 4 * h["code_err"] + 1e-6:
        fault(f"{name}: PQ codes rebuild with mean squared error {err:.4g}, training recorded {h['code_err']:.4g}")
    # ADC (PQ §4): tables from a few queries reproduce the distance to x̂ for every listed row.
    rng = np.random.default_rng(cid)
    for q in c.vectors[rng.choice(c.rows, size=min(3, c.rows), replace=False)]:
        qs = q.reshape(m, 1, dim // m)
        if not residual:
            # Raw-vector codes: one table per query for every list, no list constant (PQ §4).
            if c.metric == "l2":
                table = ((qs - books) ** 2).sum(axis=2)
                direct = ((q - x_hat) ** 2).sum(axis=1)
            else:
                table = (qs * books).sum(axis=2)
                direct = x_hat @ q
            adc = table[np.arange(m), codes].sum(axis=1)
        elif c.metric == "l2":
            # One table per list, from the residual query q − c_l.
            adc = np.empty(len(rows), dtype=np.float64)
            for lst in np.unique(lists):
                sel = lists == lst
                rq = (q - cents[lst]).reshape(m, 1, dim // m)
                t = ((rq - books) ** 2).sum(axis=2)
                adc[sel] = t[np.arange(m), codes[sel]].sum(axis=1)
            direct = ((q - x_hat) ** 2).sum(axis=1)
        else:
            table = (qs * books).sum(axis=2)
            adc = (cents[lists] @ q) + table[np.arange(m), codes].sum(axis=1)
            direct = x_hat @ q
        if not np.allclose(adc, direct, rtol=1e-4, atol=1e-3 * (1 + np.abs(direct).max())):
            fault(f"{name}: ADC values differ from the distances to the rebuilt vectors")
            break
    return checked + c.rows


def check_flat(reader, txn, c):
    """A collection without an `ivf:` record has no entries in the IVF databases."""
    prefix = struct.pack(">I", c.id)
    for db in IVF_DATABASES:
        if db not in reader.dbs:
            continue
        for _ in reader.prefix_items(txn, db, prefix):
            reader.fault(f"{c.name}: {db} entries but no IVF record")
            break
