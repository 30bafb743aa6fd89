#!/usr/bin/env python3
"""Turn the benchmark JSON files of one run into markdown tables.

    Tools/bench_report.py OUT_DIR [--write BENCHMARKS.md] [--command "Tools/bench ..."]

Reads every *.json in OUT_DIR (files written by `vecstore-bench` and
Tools/bench_peers.py, shape {"system", "dataset", "n", "dim", "metric",
"metrics": {...}}), groups them by dataset and prints one table per dataset:
one row per metric, one column per system (vecstore first, then faiss, then
any other system), and a ratio column vecstore/faiss for throughput rows.
Metric keys this script does not know get a generic row, so new metrics need
no code change here.

With --write FILE the section between `<!-- exact:begin -->` and
`<!-- exact:end -->` in FILE is replaced (the section is appended if the
markers are missing, and FILE is created with a short header if missing).
Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import platform
import shlex
import sys

BEGIN = "<!-- exact:begin -->"
END = "<!-- exact:end -->"

PRIMARY = "vecstore"
PEER = "faiss"

FILE_HEADER = """# Benchmarks

Figures measured by `Tools/bench` (see `Tools/bench_peers.py` and
`Tools/bench_report.py`). Each section is rewritten by `Tools/bench --write`;
edit outside the markers only.

"""


# --------------------------------------------------------------------------
# Formatting helpers


def fmt_num(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:  # NaN
            return "—"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a >= 0.001:
            return f"{v:.4f}"
        return f"{v:.3g}"
    return str(v)


def fmt_bytes(b) -> str:
    b = float(b)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def fmt_recall(v) -> str:
    return "—" if v is None else f"{float(v):.4f}"


def fmt_ms(v) -> str:
    return "—" if v is None else f"{float(v):.1f}"


# --------------------------------------------------------------------------
# Rows
#
# A row is (label, getter, formatter, ratio?). getter(metrics) returns the
# value or None; `consumes` lists metric keys the row shows, so they are not
# repeated as generic rows.


def _get(key):
    return lambda m: m.get(key)


def _store_ratio(m):
    sb, rb = m.get("store_bytes"), m.get("raw_bytes")
    if sb is None or rb in (None, 0):
        return None
    return (sb, rb)


def _fmt_store_ratio(v) -> str:
    if v is None:
        return "—"
    sb, rb = v
    return f"{sb / rb:.2f}× ({fmt_bytes(sb)} / {fmt_bytes(rb)})"


KNOWN_ROWS = [
    # label, getter, formatter, show ratio, metric keys consumed
    ("import vectors/s", _get("import_vps"), fmt_num, False, ["import_vps"]),
    ("store size / raw bytes", _store_ratio, _fmt_store_ratio, False,
     ["store_bytes", "raw_bytes"]),
    ("open + first query ms", _get("open_first_query_ms"), fmt_ms, False,
     ["open_first_query_ms"]),
    ("QPS single-query 1 thread", _get("qps_single_1t"), fmt_num, True, ["qps_single_1t"]),
    ("QPS single-query all threads", _get("qps_single_all"), fmt_num, True, ["qps_single_all"]),
    ("QPS batched 1 thread", _get("qps_batch_1t"), fmt_num, True, ["qps_batch_1t"]),
    ("QPS batched all threads", _get("qps_batch_all"), fmt_num, True, ["qps_batch_all"]),
    ("recall@10", _get("recall@10"), fmt_recall, False, ["recall@10"]),
]


def generic_formatter(key: str):
    if key.endswith("_bytes"):
        return lambda v: "—" if v is None else fmt_bytes(v)
    if key.startswith("recall"):
        return fmt_recall
    return fmt_num


def is_throughput(key: str) -> bool:
    k = key.lower()
    return k.startswith("qps") or k.endswith("_vps") or k.endswith("_qps") or "per_s" in k


def ratio(a, b) -> str:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return "—"
    if b == 0 or a != a or b != b:
        return "—"
    return f"{a / b:.2f}×"


# --------------------------------------------------------------------------
# Loading


def load_results(out_dir: str) -> list[dict]:
    docs = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: skipping {path}: {e}", file=sys.stderr)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
            print(f"warning: skipping {path}: no 'metrics' object", file=sys.stderr)
            continue
        doc.setdefault("system", os.path.splitext(os.path.basename(path))[0].split("-")[0])
        doc.setdefault("dataset", "unknown")
        doc["_file"] = os.path.basename(path)
        docs.append(doc)
    return docs


def system_order(systems) -> list[str]:
    rest = sorted(s for s in systems if s not in (PRIMARY, PEER))
    return [s for s in (PRIMARY, PEER) if s in systems] + rest


# --------------------------------------------------------------------------
# Tables


PLOT_MODES = [("single 1 thread", "qps_single_1t"), ("single all threads", "qps_single_all"),
              ("batched 1 thread", "qps_batch_1t"), ("batched all threads", "qps_batch_all")]


def plot_dataset(name: str, docs: list[dict], plot_dir: str) -> str | None:
    """Writes PLOT_DIR/exact-<name>.svg (queries/s by mode, one bar per system) and returns the markdown
    image line. Exact search has recall 1 everywhere, so the picture compares speed alone."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import svgplot
    by_sys = {d["system"]: d["metrics"] for d in docs}
    systems = system_order(by_sys)
    series = [{"name": s, "values": [by_sys[s].get(key) for _, key in PLOT_MODES]} for s in systems]
    if not any(v is not None for s in series for v in s["values"]):
        return None
    file = f"exact-{name}.svg"
    svgplot.write(os.path.join(plot_dir, file), svgplot.bars(
        [label for label, _ in PLOT_MODES], series, title=f"{name}: exact search queries/s",
        subtitle="recall@10 = 1 for every system; higher is faster", y_label="queries/s"))
    return f"![{name}: exact search queries/s by mode]({os.path.basename(plot_dir)}/{file})"


def dataset_table(name: str, docs: list[dict]) -> str:
    by_sys: dict[str, dict] = {}
    for d in docs:
        if d["system"] in by_sys:
            print(f"warning: {name}: several results for {d['system']}; using {d['_file']}",
                  file=sys.stderr)
        by_sys[d["system"]] = d
    systems = system_order(by_sys)
    # vecstore is always a column, so a missing run is visible
    if PRIMARY not in systems:
        systems = [PRIMARY] + systems
    want_ratio = True
    metrics = {s: by_sys[s]["metrics"] if s in by_sys else {} for s in systems}

    lines = []
    ref = by_sys.get(PRIMARY) or next(iter(by_sys.values()))
    desc = [f"n = {ref.get('n', '?'):,}" if isinstance(ref.get("n"), int) else f"n = {ref.get('n', '?')}",
            f"dim = {ref.get('dim', '?')}", f"metric = {ref.get('metric', '?')}"]
    nqs = sorted({d.get("nq") for d in docs if d.get("nq") is not None})
    if nqs:
        desc.append("queries = " + "/".join(str(x) for x in nqs))
    mismatch = [s for s in by_sys
                if any(by_sys[s].get(k) != ref.get(k) for k in ("n", "dim", "metric")
                       if by_sys[s].get(k) is not None and ref.get(k) is not None)]
    lines.append(f"### {name}")
    lines.append("")
    lines.append(", ".join(desc))
    if mismatch:
        lines.append("")
        lines.append("**Warning:** n/dim/metric differ between systems: "
                     + ", ".join(f"{s} ({by_sys[s].get('n')}, {by_sys[s].get('dim')}, "
                                 f"{by_sys[s].get('metric')})" for s in by_sys))
    lines.append("")

    header = ["metric"] + systems
    if want_ratio:
        header.append(f"{PRIMARY}/{PEER}")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")

    consumed: set[str] = set()
    for label, getter, fmt, show_ratio, keys in KNOWN_ROWS:
        consumed.update(keys)
        vals = {s: getter(metrics[s]) for s in systems}
        if all(v is None for v in vals.values()):
            continue
        row = [label] + [fmt(vals[s]) for s in systems]
        if want_ratio:
            row.append(ratio(vals.get(PRIMARY), vals.get(PEER)) if show_ratio else "")
        lines.append("| " + " | ".join(row) + " |")

    extra_keys: list[str] = []
    for s in systems:
        for k in metrics[s]:
            if k not in consumed and k not in extra_keys:
                extra_keys.append(k)
    for k in extra_keys:
        fmt = generic_formatter(k)
        vals = {s: metrics[s].get(k) for s in systems}
        row = [f"`{k}`"] + [fmt(vals[s]) for s in systems]
        if want_ratio:
            row.append(ratio(vals.get(PRIMARY), vals.get(PEER)) if is_throughput(k) else "")
        lines.append("| " + " | ".join(row) + " |")

    notes = []
    for s in systems:
        d = by_sys.get(s)
        if d is None:
            notes.append(f"{s}: no result")
            continue
        bits = []
        if d.get("index"):
            bits.append(str(d["index"]))
        if d.get("version"):
            bits.append(str(d["version"]))
        env = d.get("env") or {}
        for tp in env.get("threadpools", []) or []:
            # numpy's own OpenBLAS (libscipy_openblas) is not what the system searches with
            if tp.get("user_api") == "blas" and "scipy_openblas" not in (tp.get("file") or ""):
                arch = f", {tp['architecture']} kernels" if tp.get("architecture") else ""
                bits.append(f"{tp.get('internal_api')} {tp.get('version') or ''}{arch}".strip())
        if "faiss_blas_threshold" in d:
            bits.append(f"BLAS threshold {d['faiss_blas_threshold']} queries")
        if bits:
            notes.append(f"{s}: " + ", ".join(bits))
    if notes:
        lines.append("")
        lines.append("_" + "; ".join(notes) + "_")
    lines.append("")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def build_report(docs: list[dict], command: str | None, plot_dir: str | None = None) -> str:
    datasets: dict[str, list[dict]] = {}
    for d in docs:
        datasets.setdefault(d["dataset"], []).append(d)
    parts = []
    now = _dt.datetime.now(_dt.timezone.utc).astimezone()
    parts.append("## Exact search (brute force)")
    parts.append("")
    if command:
        parts.append(f"Command: `{command}`  ")
    parts.append(f"Date: {now.strftime('%Y-%m-%d %H:%M %Z')}  ")
    parts.append(f"CPU: {cpu_model()}, {os.cpu_count()} cores  ")
    parts.append("QPS figures are best of 3; recall@10 counts ties at the 10th "
                 "ground-truth distance as hits.")
    parts.append("")
    if not datasets:
        parts.append("_No results._")
        parts.append("")
    for name in sorted(datasets):
        parts.append(dataset_table(name, datasets[name]))
        image = plot_dataset(name, datasets[name], plot_dir) if plot_dir else None
        if image:
            parts.append("")
            parts.append(image)
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------
# Writing into a markdown file between markers


def write_section(path: str, body: str) -> None:
    section = f"{BEGIN}\n{body}{END}"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    else:
        text = FILE_HEADER
    b = text.find(BEGIN)
    e = text.find(END, b + len(BEGIN)) if b >= 0 else -1
    if b >= 0 and e >= 0:
        text = text[:b] + section + text[e + len(END):]
    else:
        if b >= 0 or text.find(END) >= 0:
            print(f"warning: {path}: unmatched exact markers; appending a new section",
                  file=sys.stderr)
        if text and not text.endswith("\n"):
            text += "\n"
        if text and not text.endswith("\n\n"):
            text += "\n"
        text += section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", help="directory holding the run's *.json files")
    ap.add_argument("--write", metavar="FILE",
                    help="rewrite the exact section of FILE (e.g. BENCHMARKS.md)")
    ap.add_argument("--command", default=None,
                    help="command line to quote in the report (default: this one)")
    ap.add_argument("--plot-dir", metavar="DIR",
                    help="also write DIR/exact-<dataset>.svg (queries/s by mode) and embed it")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.out_dir):
        print(f"error: {args.out_dir} is not a directory", file=sys.stderr)
        return 2
    docs = load_results(args.out_dir)
    if not docs:
        print(f"warning: no result JSON in {args.out_dir}", file=sys.stderr)
    command = args.command or " ".join(shlex.quote(a) for a in [sys.argv[0]] + sys.argv[1:])
    report = build_report(docs, command, args.plot_dir)
    sys.stdout.write(report)
    if args.write:
        write_section(args.write, report)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
