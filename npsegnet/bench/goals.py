"""Rates, percentages of the probed peaks, ratios, and issue 16's goals."""

from __future__ import annotations

from .rows import RowSpec

# The goals of issue 16 ("Speed, measured fairly"), all from one run.
GOAL_TRAIN_TIME_RATIO = 0.8  # SegNet-Basic 360x480 b4 training step
GOAL_TRAIN_MEMORY_RATIO = 1.0  # its peak memory against PyTorch's
GOAL_VGG_TIME_RATIO = 0.8  # SegNet (VGG16) 360x480 b1 training step
GOAL_VGG_MEMORY_RATIO = 1.0
GOAL_INFER_MEMORY_RATIO = 1.0  # SegNet-Basic inference memory
GOAL_CONV_PCT_SGEMM = 85.0
GOAL_MEMBOUND_PCT_COPY = 50.0
GOAL_COLD_START_S = 4.0  # first result in a fresh process (empty Numba cache)
GOAL_WARM_START_S = 2.0  # the same with the kernels cached (issue 5's goal)


def _rate(spec: RowSpec, seconds: float) -> float | None:
    """GFLOP/s or GB/s of ``spec`` done in ``seconds`` (None for time rows)."""
    if spec.metric in ("flop", "byte") and seconds > 0:
        return spec.work / seconds / 1e9
    return None


def finish_row(spec: RowSpec, measured: dict, probes: dict, use_torch: bool) -> dict:
    """Add rates, percentages of the probed peak and the ratio to one row."""
    unit = {"flop": "GFLOP/s", "byte": "GB/s"}.get(spec.metric)
    peak = {"flop": probes.get("sgemm_gflops"), "byte": probes.get("copy_gbps")}.get(
        spec.metric
    )
    row = {
        "name": spec.name,
        "group": spec.group,
        "shape": list(spec.shape),
        "metric": spec.metric,
        "work": spec.work,
        "unit": unit,
    }
    for fw in ("npsegnet", "pytorch"):
        m = measured.get(fw)
        if m is None:
            row[fw] = None
            continue
        m = dict(m)
        if "median_s" in m:
            rate = _rate(spec, m["median_s"])
            m["rate"] = rate
            m["pct_peak"] = 100.0 * rate / peak if rate and peak else None
        row[fw] = m
    a, b = row["npsegnet"], row["pytorch"]
    row["ratio"] = (
        a["median_s"] / b["median_s"]
        if a and b and "median_s" in a and "median_s" in b and b["median_s"] > 0
        else None
    )
    return row


def _row(report: dict, name: str) -> dict | None:
    return next((r for r in report["rows"] if r["name"] == name), None)


def _goal(name, target, measured, passed, detail="") -> dict:
    return {
        "goal": name,
        "target": target,
        "measured": measured,
        "passed": passed,
        "detail": detail,
    }


def _memory_ratio(row) -> float | None:
    """npsegnet's peak-memory increment over PyTorch's for one model row."""
    increments = [
        ((row or {}).get(fw) or {}).get("memory", {}).get("increment_mb")
        for fw in ("npsegnet", "pytorch")
    ]
    np_mb, pt_mb = increments
    return np_mb / pt_mb if np_mb is not None and pt_mb else None


def _ratio_goal(label, what, limit, ratio, detail="") -> dict:
    return _goal(
        f"{label}: {what}",
        f"<= {limit:.2f}x",
        ratio,
        None if ratio is None else ratio <= limit,
        detail,
    )


def _model_row(report, prefix, full_suffix):
    """The model row named ``prefix...``; at full size the one of the goal."""
    size = report["options"]["size"]
    return next(
        (
            r
            for r in report["rows"]
            if r["name"].startswith(prefix)
            and (size != "full" or r["name"].endswith(full_suffix))
        ),
        None,
    )


def evaluate_goals(report: dict) -> list[dict]:
    """Issue 16's goals, each ``passed`` True, False or None (not measured)."""
    goals = []
    memory_note = "increment of peak RSS over the process baseline"

    def fw(row, key):
        return (row or {}).get(key) or {}

    train = _model_row(report, "segnet-basic.train.", "360x480.b4")
    label = train["name"] if train else "segnet-basic.train.360x480.b4"
    goals.append(
        _ratio_goal(
            label,
            f"time <= {GOAL_TRAIN_TIME_RATIO}x PyTorch",
            GOAL_TRAIN_TIME_RATIO,
            train["ratio"] if train else None,
        )
    )
    goals.append(
        _ratio_goal(
            label,
            "peak memory <= PyTorch's",
            GOAL_TRAIN_MEMORY_RATIO,
            _memory_ratio(train),
            memory_note,
        )
    )
    for prefix, threshold, what in (
        (("conv",), GOAL_CONV_PCT_SGEMM, "conv layers: >= {t:.0f}% of SGEMM"),
        (
            ("maxpool", "maxunpool", "batchnorm", "relu"),
            GOAL_MEMBOUND_PCT_COPY,
            "pool/unpool/BN/ReLU: >= {t:.0f}% of copy bandwidth",
        ),
    ):
        rows = [
            r
            for r in report["rows"]
            if r["group"] == "layer" and r["name"].startswith(prefix)
        ]
        pcts = [(fw(r, "npsegnet").get("pct_peak"), r["name"]) for r in rows]
        known = [(p, n) for p, n in pcts if p is not None]
        worst = min(known) if known else None
        passed = None
        if known and len(known) == len(pcts):
            passed = worst[0] >= threshold
        goals.append(
            _goal(
                what.format(t=threshold),
                f">= {threshold:.0f}%",
                worst[0] if worst else None,
                passed,
                f"worst: {worst[1]}" if worst else "",
            )
        )
    vgg = _model_row(report, "segnet.train.", "360x480.b1")
    label = vgg["name"] if vgg else "segnet.train.360x480.b1"
    goals.append(
        _ratio_goal(
            label,
            f"time <= {GOAL_VGG_TIME_RATIO}x PyTorch",
            GOAL_VGG_TIME_RATIO,
            vgg["ratio"] if vgg else None,
        )
    )
    goals.append(
        _ratio_goal(
            label,
            "peak memory <= PyTorch's",
            GOAL_VGG_MEMORY_RATIO,
            _memory_ratio(vgg),
            memory_note,
        )
    )
    infer = _model_row(report, "segnet-basic.infer.", "360x480.b4")
    goals.append(
        _ratio_goal(
            infer["name"] if infer else "segnet-basic.infer.360x480.b4",
            "memory <= PyTorch's",
            GOAL_INFER_MEMORY_RATIO,
            _memory_ratio(infer),
            memory_note,
        )
    )
    for name, limit in (
        ("startup.cold", GOAL_COLD_START_S),
        ("startup.warm", GOAL_WARM_START_S),
    ):
        t = fw(_row(report, name), "npsegnet").get("median_s")
        goals.append(
            _goal(
                f"time to first result, {name.split('.')[1]}",
                f"<= {limit:.0f} s",
                t,
                None if t is None else t <= limit,
            )
        )
    return goals
