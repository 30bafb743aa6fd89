"""IVF-Flat / IVF-PQ checks of Tools/conformance.py, written from Spec/IVF.md and Spec/PQ.md alone: the
`ivf:<cid>` record (§2, §2.1), centroids (§3), PQ codebooks (PQ §2), list blocks (§4, codes PQ §3), and the
ADC arithmetic (PQ §4): every decoded code is rebuilt as c + r̂ (residual codes) or x̂ (codes of the raw
vectors, header flags bit 0 clear, feature `ivf-pq-raw`) and its ADC value, computed from look-up tables, is
compared with the distance to the rebuilt vector; binary16 IVF-Flat lists (kind 5, feature `ivf-flat16`) are
decoded and their copies, error bounds and norms recomputed from the float32 rows, and the §6.2 bound is
checked against the float32 scores of a few queries. Reads the `ivf` and `ivf-lists` databases with
py-lmdb and numpy; no vecstore code."""

import struct

import numpy as np

IVF_DATABASES = ["ivf", "ivf-lists"]
KINDS = {1: "flat", 2: "pq8", 3: "pq4", 4: "pq4-fastscan", 5: "flat16"}
FLAT = (1, 5)


def decode_header(value):
    """The 64-byte trained header (IVF §2) as a dict, or the 32-byte parameters record (§2.1) as
    {"pending": True, ...}; raises ValueError."""
    if len(value) == 32:
        version, kind, metric, r0, nlist, m, bits, r1, train_at = struct.unpack_from("<BBBBIHBBI", value, 0)
        # Byte 3 bit 0: PQ codes of the raw vectors (0 for flat and residual codes).
        if version != 1 or r0 > 1 or (r0 and kind in FLAT) or r1 or kind not in (1, 2, 4, 5) or train_at < 1:
            raise ValueError("IVF parameters record: bad version, kind, flags, reserved byte or threshold")
        return dict(pending=True, kind=kind, metric=metric, nlist=nlist, m=m, bits=bits, raw=bool(r0))
    if len(value) != 64:
        raise ValueError(f"IVF record has {len(value)} bytes, not 64 or 32")
    version, kind, metric, flags, nlist, dim, m, bits, defaults, cap, nprobe, refine = struct.unpack_from(
        "<BBBBIIHBBIHH", value, 0)
    seed, coarse_err, code_err, train_rows, iters, reserved = struct.unpack_from("<QddIIQ", value, 24)
    # flags bit 0: residual codes (PQ kinds may clear it: codes of the raw vectors); flat has 0.
    if version != 1 or kind not in KINDS or flags > 1 or (kind in FLAT and flags) or defaults & 0xF0 or reserved:
        raise ValueError("IVF header: bad version, kind, flags, defaults or reserved field")
    if not (1 <= nlist <= 65536 and 1 <= dim <= 65535 and cap % 32 == 0 and 32 <= cap <= 65536):
        raise ValueError("IVF header: nlist, dimension or block capacity out of range")
    if kind in FLAT and (m or bits):
        raise ValueError("IVF header: flat index with M or bits")
    if kind not in FLAT and (not 1 <= m <= 256 or dim % m or bits != (8 if kind == 2 else 4)):
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
    if kind == 5:
        return n * (8 + 2 * width)
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
    if (h["raw"] if h["pending"] else (h["kind"] not in FLAT and not h["residual"])) and "ivf-pq-raw" not in reader.features:
        fault(f"{name}: IVF-PQ codes of the raw vectors without the ivf-pq-raw feature")
    if h["kind"] == 5 and "ivf-flat16" not in reader.features:
        fault(f"{name}: binary16 IVF lists without the ivf-flat16 feature")
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
    if kind not in FLAT:
        ksub, dsub = 1 << h["bits"], dim // m
        raw = txn.get(prefix + b"\x01", db=ivf)
        if raw is None or len(raw) != 4 * dim * ksub:
            fault(f"{name}: PQ codebooks missing or of the wrong length")
            return 1
        books = np.frombuffer(raw, dtype="<f4").reshape(m, ksub, dsub)
        if not np.isfinite(books).all():
            fault(f"{name}: PQ codebook value not finite")
    width = dim if kind in FLAT else m
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
        elif kind == 5:
            checked += check_flat16(name, lst, blk, payload, n, dim, c.vectors[rows], c.metric, fault)
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
    # Rebuild x̂ = c_l + r̂ (residual codes) or x̂ = the decoded code (raw-vector codes) (PQ §1), for the ADC check.
    residual = h["residual"]
    offset = cents[lists] if residual else np.zeros((len(rows), dim), dtype=np.float32)
    residual_hat = np.concatenate([books[j][codes[:, j]] for j in range(m)], axis=1)
    x_hat = offset + residual_hat
    # Each code is the nearest codebook entry of its residual's (or vector's) sub-vector (PQ §1; ties either way).
    resid = (c.vectors[rows] - offset).reshape(len(rows), m, dim // m)
    for j in range(m):
        d = ((resid[:, j, None, :] - books[j][None, :, :]) ** 2).sum(axis=2)
        stored = d[np.arange(len(rows)), codes[:, j]]
        bad = np.nonzero(stored > d.min(axis=1) + 1e-4 * (1 + (resid[:, j] ** 2).sum(axis=1)))[0]
        if len(bad):
            fault(f"{name}: row {rows[bad[0]]}'s PQ code {j} is not the nearest codebook entry of its residual")
            break
    # No bound of the reconstruction error against the recorded training error: Spec/IVF.md §8 asks only that
    # each code be the nearest (above); rows added after training on a small sample can rebuild worse than it.
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


def rounded_up(sum_of_squares):
    """IVF §4.2: sqrt of the float64 sum, times 1 + 2^-40, rounded up to float32."""
    v = np.sqrt(sum_of_squares) * (1 + 2.0 ** -40)
    f = np.float32(v)
    if float(f) < v:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def check_flat16(name, lst, blk, payload, n, dim, x, metric, fault):
    """A binary16 block (IVF §4.2): n error bounds, n norms, then n × dim halves. Every half must be the
    round-to-nearest binary16 of the stored float32 component, e the rounded-up ‖x − h‖ (+inf when a half is
    infinite), ν the rounded-up ‖x‖; and the certified test of §6.2 must keep every row whose float32 score
    reaches a threshold (checked against a few queries: a bound below the row's own score is a fault)."""
    e = np.frombuffer(payload, dtype="<f4", count=n, offset=0)
    nu = np.frombuffer(payload, dtype="<f4", count=n, offset=4 * n)
    h = np.frombuffer(payload, dtype="<f2", count=n * dim, offset=8 * n).reshape(n, dim)
    if np.isnan(h).any():
        fault(f"{name}: IVF list {lst} block {blk}: a binary16 component is NaN")
        return 1
    with np.errstate(over="ignore"):
        expected_h = x.astype(np.float16)
    if not np.array_equal(h.view(np.uint16), expected_h.view(np.uint16)):
        fault(f"{name}: IVF list {lst} block {blk}: binary16 copies are not the rounding of the stored rows")
        return 1
    hf = h.astype(np.float64)
    xd = x.astype(np.float64)
    for r in range(n):
        if np.isinf(hf[r]).any():
            want_e = np.float32(np.inf)
        else:
            diff = xd[r] - hf[r]
            want_e = rounded_up(sum(float(t) * float(t) for t in diff))
        want_nu = rounded_up(sum(float(t) * float(t) for t in xd[r]))
        if e[r] != want_e or nu[r] != want_nu:
            fault(f"{name}: IVF list {lst} block {blk} row {r}: error bound {e[r]} / norm {nu[r]}, "
                  f"expected {want_e} / {want_nu}")
            return 1
    # Scores (IVF §6.2): the copy's score a, widened by the bound, never falls short of the float32 score.
    g = (dim + 4) * 2.0 ** -24
    g = g / (1 - g)
    tiny = (dim + 4) * 2.0 ** -140
    finite = np.isfinite(e)
    rng = np.random.default_rng(lst * 7919 + blk)
    for q in x[rng.choice(n, size=min(3, n), replace=False)] + np.float32(0.01):
        q = q.astype(np.float32)
        qn = np.sqrt((q.astype(np.float64) ** 2).sum()) * (1 + 2.0 ** -40)
        if metric == "l2":
            a = ((q.astype(np.float32)[None, :] - hf.astype(np.float32)) ** 2).sum(axis=1, dtype=np.float32)
            exact = ((q[None, :] - x) ** 2).sum(axis=1, dtype=np.float32).astype(np.float64)
            # lower bound of fl(|q - x|^2): (1 - g)(sqrt((a - tiny)/(1 + g)) - e)^2 - tiny
            low = np.sqrt(np.maximum(a.astype(np.float64) - tiny, 0) / (1 + g)) - e.astype(np.float64)
            low = (1 - g) * np.maximum(low, 0) ** 2 - tiny
            bad = finite & (low > exact * (1 + 1e-12))
        else:
            a = (hf.astype(np.float32) @ q).astype(np.float64)
            exact = (x @ q).astype(np.float64)
            upper = a + qn * (e + g * (2 * nu.astype(np.float64) + e)) + np.abs(a) * 2.0 ** -50 + 2 * tiny
            bad = finite & (upper < exact * (1 - 1e-12) - 1e-30)
        if bad.any():
            fault(f"{name}: IVF list {lst} block {blk}: the §6.2 bound excludes a row its float32 score admits")
            return 1
    return 1


def check_flat(reader, txn, c):
    """A collection without an `ivf:` record has no entries in the IVF databases."""
    prefix = struct.pack(">I", c.id)
    for db in IVF_DATABASES:
        if db not in reader.dbs:
            continue
        for _ in reader.prefix_items(txn, db, prefix):
            reader.fault(f"{c.name}: {db} entries but no IVF record")
            break
