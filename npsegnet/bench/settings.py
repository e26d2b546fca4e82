"""The process settings a comparison runs under, and the BLAS each side uses.

A ratio of two frameworks' times is fair only if both ran under the same
process-wide settings: thread counts, the C library's allocator options
(``--mallopt``), and the environment variables that steer BLAS. The report
states them, names the BLAS kernel each framework runs, and warns when an
environment variable forces one below what the CPU can do (with
``OPENBLAS_CORETYPE=Haswell`` NumPy's SGEMM on an AVX-512 CPU runs at about
half its speed). Everything here is a pure function of what the worker
processes report, so it is tested without timing anything.
"""

from __future__ import annotations

import re

#: Environment variables that change how either framework computes or
#: allocates; those that are set appear in the report header.
RELEVANT_ENV = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_DISABLE_JIT",
    "NUMBA_CACHE_DIR",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_VERBOSE",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "KMP_AFFINITY",
    "OMP_PROC_BIND",
    "GOMP_CPU_AFFINITY",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "LD_PRELOAD",
)

# Instruction-set levels, lowest first; a CPU's is its best flag in
# /proc/cpuinfo (machine_info()["simd"]).
ISA_LEVELS = ("sse", "avx", "avx2", "avx512")
_FLAG_LEVEL = {"avx512f": "avx512", "avx2": "avx2", "avx": "avx"}

# OpenBLAS's x86-64 kernel names (OPENBLAS_CORETYPE values, and what
# threadpoolctl reports as "architecture"), by the instruction set their
# kernels use. Zen covers Zen 1-3 (AVX2); OpenBLAS runs Zen 4 on SkylakeX's.
OPENBLAS_CORE_ISA = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), "avx512"),
    **dict.fromkeys(("haswell", "zen", "broadwell", "skylake"), "avx2"),
    **dict.fromkeys(
        ("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"), "avx"
    ),
    **dict.fromkeys(
        (
            "nehalem",
            "core2",
            "penryn",
            "dunnington",
            "atom",
            "prescott",
            "opteron",
            "opteron_sse3",
            "barcelona",
            "bobcat",
            "nano",
            "katmai",
            "coppermine",
            "northwood",
            "banias",
            "athlon",
        ),
        "sse",
    ),
}

# PyTorch's and oneDNN's own switches, by the level they cap the kernels at.
ATEN_CAPABILITY_ISA = {"default": "sse", "avx2": "avx2", "avx512": "avx512"}
ONEDNN_ISA_PREFIX = (("AVX512", "avx512"), ("AVX2", "avx2"), ("AVX", "avx"))


def cpu_isa(simd) -> str:
    """The best instruction-set level of a CPU from its flags (``avx512f``...)."""
    best = "sse"
    for flag in simd or ():
        level = _FLAG_LEVEL.get(flag)
        if level and ISA_LEVELS.index(level) > ISA_LEVELS.index(best):
            best = level
    return best


def openblas_core_isa(core) -> str | None:
    """The level of an OpenBLAS kernel name (case-insensitive); None if unknown."""
    if not core:
        return None
    return OPENBLAS_CORE_ISA.get(str(core).strip().lower())


def _onednn_isa(value: str) -> str | None:
    value = value.strip().upper()
    if value in ("ALL", "DEFAULT", ""):
        return None
    for prefix, level in ONEDNN_ISA_PREFIX:
        if value.startswith(prefix):
            return level
    return "sse" if value.startswith("SSE") else None


def _below(level: str | None, cpu: str) -> bool:
    return level is not None and ISA_LEVELS.index(level) < ISA_LEVELS.index(cpu)


def blas_warnings(env: dict, simd, numpy_core: str | None = None) -> list[str]:
    """Warnings for kernels forced (or found) below the CPU's instruction set.

    Parameters
    ----------
    env : dict
        The environment the measuring processes ran with.
    simd : list of str
        The CPU's flags among ``avx512f``, ``avx2``, ``fma``, ``avx``.
    numpy_core : str, optional
        The kernel NumPy's OpenBLAS reported using (threadpoolctl's
        ``architecture``).

    Returns
    -------
    list of str
        One sentence per problem; empty when nothing holds either side back.
    """
    cpu = cpu_isa(simd)
    warnings = []
    forced = env.get("OPENBLAS_CORETYPE")
    if forced:
        level = openblas_core_isa(forced)
        if level is None:
            warnings.append(
                f"OPENBLAS_CORETYPE={forced} is not an OpenBLAS x86-64 kernel this "
                "report knows; check NumPy's kernel below"
            )
        elif _below(level, cpu):
            warnings.append(
                f"OPENBLAS_CORETYPE={forced} forces NumPy's OpenBLAS onto "
                f"{level.upper()} kernels on a CPU with {cpu.upper()}: npsegnet's "
                "GEMMs (convolutions) run below the machine's speed; unset it "
                "for a fair comparison"
            )
    core_level = openblas_core_isa(numpy_core)
    if not forced and _below(core_level, cpu):
        warnings.append(
            f"NumPy's OpenBLAS runs its {numpy_core} kernels ({core_level.upper()}) "
            f"on a CPU with {cpu.upper()}"
        )
    aten = env.get("ATEN_CPU_CAPABILITY")
    if aten and _below(ATEN_CAPABILITY_ISA.get(aten.strip().lower()), cpu):
        warnings.append(
            f"ATEN_CPU_CAPABILITY={aten} caps PyTorch's own kernels below the "
            f"CPU's {cpu.upper()}"
        )
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = env.get(name)
        if value and _below(_onednn_isa(value), cpu):
            warnings.append(
                f"{name}={value} caps PyTorch's oneDNN convolutions below the "
                f"CPU's {cpu.upper()}"
            )
    return warnings


def process_settings(env: dict, threads: int, mallopt: bool) -> dict:
    """What the report header states about the measuring processes."""
    return {
        "threads": threads,
        "mallopt": bool(mallopt),
        "env": {k: env[k] for k in RELEVANT_ENV if k in env},
    }


def numpy_blas(threadpools) -> dict | None:
    """NumPy's BLAS from a threadpoolctl ``threadpool_info()`` list."""
    for pool in threadpools or ():
        if pool.get("user_api") == "blas":
            return {
                "library": pool.get("internal_api"),
                "version": pool.get("version"),
                "kernel": pool.get("architecture"),
                "threads": pool.get("num_threads"),
                "threading": pool.get("threading_layer"),
            }
    return None


def torch_blas(config: str) -> dict:
    """PyTorch's BLAS, oneDNN and kernel level from ``torch.__config__.show()``."""

    def find(pattern):
        found = re.search(pattern, config)
        return found.group(1).strip() if found else None

    return {
        "blas": find(r"BLAS_INFO=(\w+)"),
        "mkl": find(r"Math Kernel Library Version ([^\n]+?)(?: for |\n|$)"),
        "onednn": find(r"(?:oneDNN|MKL-DNN) (v[\d.]+)"),
        "cpu_capability": find(r"CPU capability usage: (\w+)"),
    }


def describe_blas(software: dict) -> list[str]:
    """Report lines naming each framework's BLAS and its kernel."""
    lines = []
    blas = software.get("blas", {})
    pools = numpy_blas(software.get("threadpools"))
    name = (pools or {}).get("library") or blas.get("name") or "?"
    version = (pools or {}).get("version") or blas.get("version") or ""
    kernel = (pools or {}).get("kernel") or blas.get("core") or "?"
    threads = (pools or {}).get("threads")
    shown = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    lines.append(
        f"npsegnet BLAS: NumPy's {name} {version}, kernel {kernel}{shown}"
        " (GEMMs of the convolutions)"
    )
    pt = software.get("pytorch")
    if pt:
        parts = [f"BLAS {pt.get('blas') or '?'}"]
        if pt.get("mkl"):
            parts[0] += f" ({pt['mkl']})"
        if pt.get("onednn"):
            parts.append(f"convolutions oneDNN {pt['onednn']}")
        if pt.get("cpu_capability"):
            parts.append(f"CPU capability {pt['cpu_capability']}")
        lines.append("pytorch BLAS: " + ", ".join(parts))
    return lines


def describe_process(process: dict) -> str:
    """The header line of the process settings."""
    env = process.get("env", {})
    shown = ", ".join(f"{k}={v}" for k, v in env.items()) or "none set"
    mallopt = "on (both frameworks)" if process.get("mallopt") else "off"
    return (
        f"process settings (both frameworks): threads={process.get('threads')},"
        f" glibc mallopt {mallopt}; environment: {shown}"
    )
