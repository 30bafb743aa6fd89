"""HNSW graph checks of Tools/conformance.py, written from Spec/HNSW.md alone (§2 header, §3 layout,
§4 levels, §6 invariants). Reads the `graph`, `graph-upper` and `graph-vectors` databases with py-lmdb
and numpy; no vecstore code."""

import math
import struct

import numpy as np

HNSW_DATABASES = ["graph", "graph-upper", "graph-vectors"]
PHI = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1
NO_ENTRY = 0xFFFFFFFF
LEVEL_CAP = 30


def mix(z):
    """The SplitMix64 finalizer (HNSW.md §4)."""
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z


def level_of(row, seed, m):
    """⌊−ln(u)·mL⌋ with u = ((mix(seed + r·φ) >> 11) + 1)·2⁻⁵³, capped at 30 (HNSW.md §4)."""
    z = mix((seed + row * PHI) & MASK64)
    u = ((z >> 11) + 1) * 2.0 ** -53
    return min(LEVEL_CAP, int(-math.log(u) * (1.0 / math.log(m))))


def decode_header(value):
    """The 32-byte `hnsw:<cid>` record (HNSW.md §2) as a dict, or raises ValueError."""
    if len(value) != 32:
        raise ValueError(f"header has {len(value)} bytes, not 32")
    version, flags, m, efc, efs, entry, max_level = struct.unpack_from("<BBHHHIB", value, 0)
    seed, rows = struct.unpack_from("<QI", value, 16)
    if version != 1 or flags not in (1, 2):
        raise ValueError(f"header version {version} / flags {flags} unknown")
    if not 4 <= m <= 128 or max_level > LEVEL_CAP:
        raise ValueError(f"M {m} / max level {max_level} out of range")
    return dict(m=m, efc=efc, efs=efs, entry=entry, max_level=max_level, seed=seed, rows=rows,
                traversal="int8" if flags == 2 else "f16")


def decode_int8_record(value, dim):
    """The `hnsw-int8:<cid>` quantizer record (HNSW.md §3.4): (offsets, scales, training rows) as float32
    arrays, or raises ValueError."""
    if len(value) < 12:
        raise ValueError(f"int8 quantizer record has {len(value)} bytes")
    version, granularity, reserved, d, trained = struct.unpack_from("<BBHII", value, 0)
    if version != 1 or granularity != 1 or reserved != 0:
        raise ValueError(f"int8 quantizer record version {version} / granularity {granularity} unknown")
    if d != dim or len(value) != 12 + 8 * d:
        raise ValueError(f"int8 quantizer record of dimension {d} has {len(value)} bytes (collection dimension {dim})")
    offsets = np.frombuffer(value, dtype="<f4", count=d, offset=12)
    scales = np.frombuffer(value, dtype="<f4", count=d, offset=12 + 4 * d)
    with np.errstate(over="ignore", invalid="ignore"):
        reach = np.abs(offsets) + 127 * scales
    if not (np.all(np.isfinite(offsets)) and np.all(np.isfinite(scales)) and np.all(scales > 0)
            and np.all(np.isfinite(reach))):
        raise ValueError("int8 quantizer offsets / scales are not finite and positive")
    return offsets, scales, trained


def check_int8_codes(codes, vectors, offsets, scales):
    """Rows (indices) whose codes do not decode within the bound of HNSW.md §3.4: inside the trained range
    |offset + scale·c − x| ≤ scale/2 (float32 rounding allowed for), outside it c = ±127 on x's side."""
    c = codes.astype(np.float32)
    x = vectors.astype(np.float32)
    lo, hi = offsets - 127 * scales, offsets + 127 * scales
    inside = (x >= lo) & (x <= hi)
    err = np.abs(offsets + scales * c - x)
    ok_inside = err <= scales * 0.501 + 1e-6 * (np.abs(x) + np.abs(offsets))
    ok_outside = np.where(x > hi, codes == 127, codes == -127)
    ok = np.where(inside, ok_inside, ok_outside)
    return np.nonzero(~ok.all(axis=1))[0]


def check_graph(reader, txn, c, header_value):
    """Checks one indexed collection `c` (decoded by conformance.py, with c.vectors and c.live) against
    HNSW.md §6; appends faults to `reader`. Returns the number of checked items."""
    name, cid, rows = c.name, c.id, c.rows
    collection_rows = rows
    prefix = struct.pack(">I", cid)
    fault = reader.fault
    try:
        h = decode_header(header_value)
    except ValueError as e:
        fault(f"{name}: HNSW {e}")
        return 0
    m = h["m"]
    checked = 0
    # §6.1: header rows = collection rows, or fewer with feature `hnsw-tail` (§4.1: rows from the header's
    # count on are the unlinked tail, which a search scans exactly); layer-0 blocks cover the graph's rows.
    tail_allowed = "hnsw-tail" in getattr(reader, "features", set())
    if h["rows"] > rows or (h["rows"] < rows and not tail_allowed):
        fault(f"{name}: HNSW header covers {h['rows']} rows, the collection has {rows}")
        return 0
    rows = h["rows"]  # every check below is over the graph's rows; no link may reach the tail
    capacity = 1 << c.shift
    slot_words = 1 + 2 * m
    links0 = np.zeros((rows, slot_words), dtype="<u4")
    expected = 0
    for key, value in reader.prefix_items(txn, "graph", prefix):
        block = struct.unpack_from(">I", key, 4)[0] if len(key) == 8 else -1
        count = min(capacity, rows - block * capacity) if block >= 0 else 0
        if block != expected or count <= 0 or len(value) != count * slot_words * 4:
            fault(f"{name}: graph block {block} (expected {expected}) has {len(value)} bytes for {count} rows")
            return checked
        links0[block * capacity: block * capacity + count] = np.frombuffer(value, dtype="<u4").reshape(count, slot_words)
        expected += 1
    if expected * capacity < rows or (rows and expected != (rows + capacity - 1) // capacity):
        fault(f"{name}: {expected} graph blocks for {rows} rows")
        return checked
    # §6.2: layer-0 lists.
    for r in range(rows):
        checked += 1
        n = int(links0[r, 0])
        if n > 2 * m:
            fault(f"{name}: HNSW row {r} has {n} layer-0 links, more than 2M = {2 * m}")
            continue
        targets = links0[r, 1:1 + n]
        if np.any(targets >= rows):
            fault(f"{name}: HNSW row {r} links to a row ≥ {rows} on layer 0")
        if np.any(targets == r):
            fault(f"{name}: HNSW row {r} links to itself on layer 0")
        if len(set(targets.tolist())) != n:
            fault(f"{name}: HNSW row {r} has a duplicate layer-0 link")
    # §6.8: filter links (§7), when the collection declares them.
    checked += check_filter_links(reader, txn, c, m, rows, links0)
    # §6.3, §6.4: upper levels.
    members = {}
    lists = {}
    for key, value in reader.prefix_items(txn, "graph-upper", prefix):
        level = struct.unpack_from(">I", key, 4)[0] if len(key) == 8 else -1
        n = struct.unpack_from("<I", value, 0)[0] if len(value) >= 4 else -1
        if level < 1 or n < 0 or len(value) != 4 + 4 * n + 4 * n * (1 + m):
            fault(f"{name}: HNSW level block {level} is malformed ({len(value)} bytes)")
            continue
        ids = np.frombuffer(value, dtype="<u4", count=n, offset=4)
        slots = np.frombuffer(value, dtype="<u4", offset=4 + 4 * n).reshape(n, 1 + m)
        if n and (np.any(np.diff(ids.astype(np.int64)) <= 0) or int(ids[-1]) >= rows):
            fault(f"{name}: HNSW level {level} rows not strictly ascending or ≥ {rows}")
        members[level] = set(ids.tolist())
        lists[level] = (ids, slots)
    for level, (ids, slots) in lists.items():
        for i, node in enumerate(ids.tolist()):
            checked += 1
            cnt = int(slots[i, 0])
            if cnt > m:
                fault(f"{name}: HNSW node {node} has {cnt} links on level {level}, more than M = {m}")
                continue
            for t in slots[i, 1:1 + cnt].tolist():
                if t == node:
                    fault(f"{name}: HNSW node {node} links to itself on level {level}")
                elif t not in members[level]:
                    fault(f"{name}: HNSW node {node} links to {t}, which is not on level {level}")
    level_has = np.zeros(rows, dtype=np.int64)
    for level, ids in members.items():
        for node in ids:
            if node < rows:
                level_has[node] = max(level_has[node], level)
    for r in range(rows):
        want = level_of(r, h["seed"], m)
        if level_has[r] != want or any(r not in members.get(l, ()) for l in range(1, want + 1)):
            fault(f"{name}: HNSW row {r} is on levels up to {level_has[r]}, its level (§4) is {want}")
            break
    # §6.5: entry point.
    live = c.live[:rows] if c.live is not None else np.zeros(rows, dtype=bool)
    if live.any():
        top = int(level_has[live].max())
        e = h["entry"]
        if e == NO_ENTRY or e >= rows:
            fault(f"{name}: HNSW entry point {e} is not a row")
        else:
            if not live[e]:
                fault(f"{name}: HNSW entry point {e} is deleted")
            if level_has[e] != h["max_level"] or top != h["max_level"]:
                fault(f"{name}: HNSW entry point level {level_has[e]}, top live level {top}, header max level {h['max_level']}")
    # §6.6: traversal copies, binary16 (§3.3) or int8 (§3.4), of every row (tail rows included, §4.1).
    int8 = h["traversal"] == "int8"
    norm_offset = (c.dim + 3) // 4 * 4
    half_bytes = norm_offset + 4 if int8 else (c.dim + 1) // 2 * 4
    if int8:
        record = txn.get(b"hnsw-int8:" + prefix, db=reader.dbs["meta"])
        if record is None:
            fault(f"{name}: HNSW graph with int8 copies but no hnsw-int8 record")
            return checked
        try:
            offsets, scales, _ = decode_int8_record(record, c.dim)
        except ValueError as e:
            fault(f"{name}: {e}")
            return checked
    expected = 0
    for key, value in reader.prefix_items(txn, "graph-vectors", prefix):
        block = struct.unpack_from(">I", key, 4)[0] if len(key) == 8 else -1
        count = min(capacity, collection_rows - block * capacity) if block >= 0 else 0
        if block != expected or count <= 0 or len(value) != count * half_bytes:
            fault(f"{name}: graph-vectors block {block} (expected {expected}) has {len(value)} bytes for {count} rows")
            return checked
        if int8:
            rowsb = np.frombuffer(value, dtype="i1").reshape(count, half_bytes)
            bad = check_int8_codes(rowsb[:, :c.dim], c.vectors[block * capacity: block * capacity + count],
                                   offsets, scales)
            if len(bad):
                fault(f"{name}: graph-vectors block {block}: int8 codes of row {block * capacity + int(bad[0])} "
                      f"(and {len(bad) - 1} more) do not decode within half a step of the vector")
            if np.any(rowsb[:, c.dim:norm_offset]):
                fault(f"{name}: graph-vectors block {block}: int8 padding bytes are not zero")
            stored = rowsb[:, norm_offset:].copy().view("<f4").reshape(count)
            step = scales.astype(np.float64) * rowsb[:, :c.dim].astype(np.float64)
            decoded = offsets.astype(np.float64) + step
            norms = (decoded ** 2).sum(axis=1)
            # float32 rounding of offset + scale·c (which may cancel) and of the sum (HNSW.md §3.4).
            slack = 2.0 ** -21 * (np.abs(decoded) * (np.abs(offsets) + np.abs(step))).sum(axis=1)
            if not np.all(np.abs(stored - norms) <= 1e-5 * norms + slack + 1e-30):
                fault(f"{name}: graph-vectors block {block}: a stored |x̂|² differs from the decoded row's")
        else:
            halves = np.frombuffer(value, dtype="<f2").reshape(count, half_bytes // 2)[:, :c.dim]
            stored = c.vectors[block * capacity: block * capacity + count].astype(np.float16)
            if not np.array_equal(halves.view("<u2"), stored.view("<u2")):
                fault(f"{name}: graph-vectors block {block} differs from the binary16 conversion of the vectors")
        checked += count
        expected += 1
    if collection_rows and expected != (collection_rows + capacity - 1) // capacity:
        fault(f"{name}: {expected} graph-vectors blocks for {collection_rows} rows")
    return checked


def check_flat(reader, txn, c):
    """§6.7: a collection without a header has no graph entries, no filter links and no filter-links record."""
    prefix = struct.pack(">I", c.id)
    for db in HNSW_DATABASES + (["graph-flinks"] if "graph-flinks" in reader.dbs else []):
        for _ in reader.prefix_items(txn, db, prefix):
            reader.fault(f"{c.name}: {db} entries but no HNSW header (flat collection)")
            break
    if txn.get(b"hnsw-flinks:" + prefix, db=reader.dbs["meta"]) is not None:
        reader.fault(f"{c.name}: an hnsw-flinks record but no HNSW header (flat collection)")


def decode_filter_links_record(value):
    """HNSW.md §7.1: version 1, count, then (u8 length, UTF-8 name) per field."""
    if len(value) < 2 or value[0] != 1:
        raise ValueError(f"filter-links record version {value[0] if value else None}")
    count, o, fields = value[1], 2, []
    for _ in range(count):
        n = value[o]
        fields.append(value[o + 1:o + 1 + n].decode())
        o += 1 + n
    if o != len(value) or not 1 <= count <= 8 or len(set(fields)) != count or any(not f or "\0" in f for f in fields):
        raise ValueError("filter-links record is malformed")
    return fields


def field_values(reader, txn, cid, field, rows):
    """Per row below `rows`, the number of its `fields` key for `field` (FORMAT.md §10), -1 when none; a row
    under two keys returns (None, row)."""
    prefix = struct.pack(">I", cid) + field.encode() + b"\x00"
    values = np.full(rows, -1, dtype=np.int64)
    number, last = -1, None
    for key, value in reader.prefix_items(txn, "fields", prefix):
        if key != last:
            number, last = number + 1, key
        row = struct.unpack(">I", value)[0]
        if row < rows:
            if values[row] != -1:
                return None, row
            values[row] = number
    return values, None


def check_filter_links(reader, txn, c, m, rows, links0):
    """HNSW.md §6.8 / §7: the `hnsw-flinks:` record, and per field `graph-flinks` blocks shaped like `graph`'s
    whose lists stay within 2M, in range, without self links or duplicates, and join live rows of one value."""
    name, cid = c.name, c.id
    fault = reader.fault
    prefix = struct.pack(">I", cid)
    record = txn.get(b"hnsw-flinks:" + prefix, db=reader.dbs["meta"])
    has_db = "graph-flinks" in reader.dbs
    if record is None:
        if has_db:
            for _ in reader.prefix_items(txn, "graph-flinks", prefix):
                fault(f"{name}: graph-flinks entries but no hnsw-flinks record")
                break
        return 0
    if "hnsw-flinks" not in getattr(reader, "features", set()):
        fault(f"{name}: an hnsw-flinks record, but the store does not declare feature 'hnsw-flinks'")
    try:
        fields = decode_filter_links_record(record)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        fault(f"{name}: {e}")
        return 0
    if not has_db:
        fault(f"{name}: filter links declared but the store has no graph-flinks database")
        return 0
    capacity = 1 << c.shift
    slot_words = 1 + 2 * m
    live = c.live[:rows] if c.live is not None else np.zeros(rows, dtype=bool)
    checked = 0
    for key, _ in reader.prefix_items(txn, "graph-flinks", prefix):
        if len(key) != 12 or struct.unpack_from(">I", key, 4)[0] >= len(fields):
            fault(f"{name}: graph-flinks key {key.hex()} names no linked field")
            break
    for fi, field in enumerate(fields):
        lists = np.zeros((rows, slot_words), dtype="<u4")
        expected = 0
        for key, value in reader.prefix_items(txn, "graph-flinks", prefix + struct.pack(">I", fi)):
            block = struct.unpack_from(">I", key, 8)[0] if len(key) == 12 else -1
            count = min(capacity, rows - block * capacity) if block >= 0 else 0
            if block != expected or count <= 0 or len(value) != count * slot_words * 4:
                fault(f"{name}: graph-flinks block {block} of '{field}' has {len(value)} bytes for {count} rows")
                return checked
            lists[block * capacity: block * capacity + count] = np.frombuffer(value, dtype="<u4").reshape(count, slot_words)
            expected += 1
        if rows and expected != (rows + capacity - 1) // capacity:
            fault(f"{name}: {expected} graph-flinks blocks of '{field}' for {rows} rows")
            continue
        values, twice = field_values(reader, txn, cid, field, rows)
        if values is None:
            fault(f"{name}: row {twice} holds several values of linked field '{field}'")
            continue
        for r in range(rows):
            checked += 1
            n = int(lists[r, 0])
            if n > 2 * m:
                fault(f"{name}: row {r} has {n} filter links on '{field}', more than 2M = {2 * m}")
                continue
            targets = lists[r, 1:1 + n]
            if np.any(targets >= rows) or np.any(targets == r) or len(set(targets.tolist())) != n:
                fault(f"{name}: row {r} has a filter link on '{field}' out of range, to itself or twice")
                continue
            if live[r]:
                if values[r] < 0 and n > 0:
                    fault(f"{name}: row {r} has no value of '{field}' but {n} filter links")
                both = targets[live[targets]]
                if np.any(values[both] != values[r]):
                    fault(f"{name}: row {r} has a filter link on '{field}' to a live row of another value")
    return checked
