"""The process settings and BLAS lines of the bench report (pure functions).

No timing: these check what the header states and when it warns, from the
dictionaries the measuring processes report.
"""

from __future__ import annotations

import pytest

from npsegnet.bench import settings as S
from npsegnet.bench.text import format_report

AVX512_CPU = ["avx512f", "avx2", "fma", "avx"]
AVX2_CPU = ["avx2", "fma", "avx"]


def test_cpu_isa_is_the_best_flag():
    assert S.cpu_isa(AVX512_CPU) == "avx512"
    assert S.cpu_isa(AVX2_CPU) == "avx2"
    assert S.cpu_isa(["avx"]) == "avx"
    assert S.cpu_isa([]) == "sse" and S.cpu_isa(None) == "sse"


@pytest.mark.parametrize(
    ("core", "level"),
    [
        ("SkylakeX", "avx512"),
        ("COOPERLAKE", "avx512"),
        ("Haswell", "avx2"),
        ("Zen", "avx2"),
        ("SandyBridge", "avx"),
        ("Nehalem", "sse"),
        ("Prescott", "sse"),
        ("NotACore", None),
        (None, None),
    ],
)
def test_openblas_core_levels(core, level):
    assert S.openblas_core_isa(core) == level


def test_warns_when_openblas_coretype_forces_avx2_on_an_avx512_cpu():
    (warning,) = S.blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, AVX512_CPU)
    assert "OPENBLAS_CORETYPE=Haswell" in warning
    assert "AVX2" in warning and "AVX512" in warning


def test_no_warning_when_the_forced_kernel_matches_the_cpu():
    assert S.blas_warnings({"OPENBLAS_CORETYPE": "SkylakeX"}, AVX512_CPU) == []
    assert S.blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, AVX2_CPU) == []
    assert S.blas_warnings({}, AVX512_CPU, numpy_core="SkylakeX") == []
    assert S.blas_warnings({}, AVX2_CPU, numpy_core="Haswell") == []


def test_warns_about_an_unknown_coretype_and_a_low_kernel_found():
    (unknown,) = S.blas_warnings({"OPENBLAS_CORETYPE": "Pentium9"}, AVX512_CPU)
    assert "Pentium9" in unknown and "not an OpenBLAS" in unknown
    (found,) = S.blas_warnings({}, AVX512_CPU, numpy_core="Haswell")
    assert "Haswell" in found and "AVX512" in found


def test_warns_when_pytorchs_kernels_are_capped():
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    warnings = S.blas_warnings(env, AVX512_CPU)
    assert len(warnings) == 2
    assert any("ATEN_CPU_CAPABILITY=avx2" in w for w in warnings)
    assert any("ONEDNN_MAX_CPU_ISA=AVX2" in w for w in warnings)
    assert S.blas_warnings({"ONEDNN_MAX_CPU_ISA": "ALL"}, AVX512_CPU) == []
    assert S.blas_warnings({"ATEN_CPU_CAPABILITY": "avx512"}, AVX512_CPU) == []


def test_process_settings_keep_the_relevant_variables_only():
    env = {"OPENBLAS_NUM_THREADS": "2", "HOME": "/root", "OPENBLAS_CORETYPE": "Zen"}
    got = S.process_settings(env, 2, True)
    assert got == {
        "threads": 2,
        "mallopt": True,
        "env": {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Zen"},
    }
    line = S.describe_process(got)
    assert "threads=2" in line and "mallopt on (both frameworks)" in line
    assert "OPENBLAS_CORETYPE=Zen" in line and "HOME" not in line
    assert "mallopt off" in S.describe_process(S.process_settings({}, 1, False))
    assert "none set" in S.describe_process(S.process_settings({}, 1, False))


CONFIG = """PyTorch built with:
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications
  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71)
  - CPU capability usage: AVX512
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl,
"""  # noqa: E501


def test_torch_blas_reads_the_build_config():
    assert S.torch_blas(CONFIG) == {
        "blas": "mkl",
        "mkl": "2024.2-Product Build 20240605",
        "onednn": "v3.12.0",
        "cpu_capability": "AVX512",
    }
    assert S.torch_blas("") == dict.fromkeys(S.torch_blas(""), None)


POOLS = [
    {"user_api": "openmp", "internal_api": "openmp", "num_threads": 2},
    {
        "user_api": "blas",
        "internal_api": "openblas",
        "version": "0.3.31",
        "architecture": "SkylakeX",
        "num_threads": 2,
        "threading_layer": "pthreads",
    },
]


def test_blas_lines_name_both_kernels():
    assert S.numpy_blas(POOLS)["kernel"] == "SkylakeX"
    assert S.numpy_blas([]) is None
    software = {
        "blas": {"name": "scipy-openblas"},
        "threadpools": POOLS,
        "pytorch": {"torch": "2.13.0", **S.torch_blas(CONFIG)},
    }
    numpy_line, torch_line = S.describe_blas(software)
    assert "openblas 0.3.31, kernel SkylakeX, 2 threads" in numpy_line
    assert "BLAS mkl" in torch_line and "oneDNN v3.12.0" in torch_line
    assert "CPU capability AVX512" in torch_line
    # without threadpoolctl: OpenBLAS's own core name, no PyTorch line
    (only,) = S.describe_blas({"blas": {"name": "openblas", "core": "Haswell"}})
    assert "kernel Haswell" in only


def test_report_header_states_settings_and_warnings():
    report = {
        "date": "today",
        "options": {"size": "tiny", "threads": 2, "warmup": 1, "repeat": 1},
        "machine": {"cpu": "x", "usable_cpus": 2, "simd": AVX512_CPU},
        "software": {"threadpools": POOLS},
        "process": S.process_settings({"OPENBLAS_CORETYPE": "Haswell"}, 2, False),
        "warnings": S.blas_warnings({"OPENBLAS_CORETYPE": "Haswell"}, AVX512_CPU),
        "probes": {"error": "skipped"},
        "rows": [],
        "goals": [],
    }
    report["options"]["model_repeat"] = 1
    text = format_report(report)
    assert "glibc mallopt off; environment: OPENBLAS_CORETYPE=Haswell" in text
    assert "WARNING: OPENBLAS_CORETYPE=Haswell forces" in text
    assert "kernel SkylakeX" in text


# -- --mallopt: both frameworks or neither ---------------------------------------


@pytest.fixture
def mallopt_calls(monkeypatch):
    """Counts the calls of keep_freed_memory (never applied here); leaves the
    thread pools as it found them (in-process tasks resize them)."""
    import npsegnet.config
    from npsegnet.bench.machine import _restore_thread_counts, _thread_counts

    calls = []
    monkeypatch.setattr(
        npsegnet.config, "keep_freed_memory", lambda: calls.append(1) or True
    )
    saved = _thread_counts()
    yield calls
    _restore_thread_counts(saved)


PROBE = {"kind": "probe", "threads": 1, "warmup": 0, "sgemm_n": 8, "copy_mb": 1}


@pytest.mark.parametrize("framework", ["npsegnet", "pytorch"])
def test_mallopt_applies_to_either_framework_only_when_asked(mallopt_calls, framework):
    from npsegnet import bench

    task = {**PROBE, "probe_repeat": 1, "framework": framework}
    if framework == "pytorch":
        pytest.importorskip("torch")
        task["kind"] = "torch_probe"
    assert "error" not in bench._run_task(task, in_process=True)
    assert mallopt_calls == []
    assert "error" not in bench._run_task({**task, "mallopt": True}, in_process=True)
    assert mallopt_calls == [1]


def test_model_rows_apply_no_process_setting_of_their_own(mallopt_calls):
    from npsegnet.bench import build_rows, model_rows

    spec = next(s for s in build_rows("tiny", cold_start=False) if ".train." in s.name)
    out = model_rows.measure_model("npsegnet", spec, warmup=0, repeat=1)
    assert out["median_s"] > 0 and mallopt_calls == []


def test_mallopt_option_is_recorded(tmp_path, mallopt_calls):
    import json

    from npsegnet.cli import main

    path = tmp_path / "b.json"
    argv = ["bench", "--tiny", "--no-torch", "--only", "relu.fwd", "--mallopt"]
    assert main([*argv, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["options"]["mallopt"] is True and report["process"]["mallopt"]
    assert "--mallopt" in report["command"] and mallopt_calls
