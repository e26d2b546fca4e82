"""The report as aligned plain text: probes, rows, goals, notes."""

from __future__ import annotations

from .settings import describe_blas, describe_process
from .timing import _fmt_time


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _fmt_mem(m: dict | None) -> str:
    mem = (m or {}).get("memory")
    if not mem:
        return "-"
    star = "*" if mem.get("isolated") is False else ""
    return f"{mem['peak_mb']:.0f} (+{mem['increment_mb']:.0f}){star}"


def _cells(m: dict | None, col: str, unit) -> str:
    if m is None:
        return "-"
    if "error" in m:
        return "error" if col == "time" else "-"
    if col == "time":
        return _fmt_time(m.get("median_s"))
    if col == "rate":
        return _fmt(m.get("rate"), ".1f", f" {unit}" if unit else "")
    return _fmt(m.get("pct_peak"), ".0f", "%")


def align(table: list[list[str]], left: int = 2) -> str:
    """Plain-text table: the first ``left`` columns left-aligned, others right."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for k, r in enumerate(table):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]  # noqa: E501
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The report as aligned plain text: probes, rows, goals, notes."""
    out = []
    m, opt = report["machine"], report["options"]
    sw = report.get("software", {})
    pt = sw.get("pytorch", {})
    out.append(
        f"npsegnet bench  {report['date']}  size={opt['size']}"
        f"  threads={opt['threads']}  warmup={opt['warmup']}"
        f"  repeat={opt['repeat']}/{opt['model_repeat']} (layers/models)"
    )
    out.append(
        f"cpu: {m['cpu']} ({m['usable_cpus']} usable cpus, {', '.join(m['simd'])});"
        f" load average at start {_fmt_load(m.get('loadavg_start'))}"
        f", end {_fmt_load(m.get('loadavg_end'))}"
    )
    blas = sw.get("blas", {})
    core = f", {blas['core']}" if blas.get("core") else ""
    out.append(
        f"numpy {sw.get('numpy', '?')} ({blas.get('name', '?')}"
        f" {blas.get('version', '')}{core}), numba {sw.get('numba', '?')}"
        f", torch {pt.get('torch', 'absent')}"
        + (f" ({pt.get('blas')})" if pt.get("blas") else "")
    )
    if "process" in report:
        out.append(describe_process(report["process"]))
    out += describe_blas(sw)
    out += [f"WARNING: {w}" for w in report.get("warnings", [])]
    p = report["probes"]
    if p.get("sgemm_gflops"):
        n = p["sgemm"][0]["n"]
        line = (
            f"peaks: SGEMM {n}^2 float32 {p['sgemm_gflops']:.1f} GFLOP/s;"
            f" copy {p['copy_gbps']:.1f} GB/s (read + write)"
        )
        if "torch_sgemm" in p:
            line += (
                f"; torch.mm {p['torch_sgemm']['gflops']:.1f} GFLOP/s (for reference)"
            )
        out.append(line)
    else:
        out.append(f"peaks: probe failed: {p.get('error')}")
    out.append("")
    table = [
        [
            "row",
            "shape",
            "npsegnet",
            "pytorch",
            "np/pt",
            "npsegnet rate",
            "%peak",
            "pytorch rate",
            "%peak",
            "np MB (+incr)",
            "pt MB (+incr)",
        ]
    ]
    for r in report["rows"]:
        a, b = r["npsegnet"], r["pytorch"]
        table.append(
            [
                r["name"],
                "x".join(str(s) for s in r["shape"]),
                _cells(a, "time", None),
                _cells(b, "time", None),
                _fmt(r["ratio"], ".2f"),
                _cells(a, "rate", r["unit"]),
                _cells(a, "pct", None),
                _cells(b, "rate", r["unit"]),
                _cells(b, "pct", None),
                _fmt_mem(a),
                _fmt_mem(b),
            ]
        )
    out.append(align(table))
    errors = [
        (r["name"], fw, r[fw]["error"])
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
        if r[fw] and "error" in r[fw]
    ]
    out.append("")
    goals = [["goal", "target", "measured", "result"]]
    for g in report["goals"]:
        v = g["measured"]
        if v is None:
            shown = "-"
        elif "%" in g["target"]:
            shown = f"{v:.0f}%"
        elif g["target"].endswith(" s"):
            shown = f"{v:.2f} s"
        else:
            shown = f"{v:.2f}x"
        if g["detail"].startswith("worst"):
            shown += f" ({g['detail']})"
        result = {True: "pass", False: "FAIL", None: "n/a"}[g["passed"]]
        goals.append([g["goal"], g["target"], shown, result])
    out.append(align(goals, left=1))
    notes = list(report.get("notes", []))
    for r in report["rows"]:
        for fw in ("npsegnet", "pytorch"):
            m = r[fw] or {}
            if r["group"] == "startup" and "first_forward_s" in m:
                notes.append(
                    f"{r['name']} ({fw}): interpreter {m['interpreter_s']:.2f} s,"
                    f" imports {m['import_s']:.2f} s, first forward"
                    f" {m['first_forward_s']:.2f} s (a second one:"
                    f" {m['second_forward_s']:.2f} s)"
                )
    isolated = [
        (r[fw].get("memory") or {}).get("isolated", True)
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
        if r[fw]
    ]
    if not all(isolated):
        notes.append("* memory measured in-process: not isolated per row")
    notes += [
        f"{name} ({fw}): {msg.splitlines()[-1][:200]}" for name, fw, msg in errors
    ]
    if notes:
        out.append("")
        out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def _fmt_load(load) -> str:
    return "?" if not load else f"{load[0]:.2f}"
