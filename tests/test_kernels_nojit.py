"""Kernels run as the plain Python they are written as (``NUMBA_DISABLE_JIT=1``).

The JIT is a process-wide switch read at import, so the plain-Python run
happens in a subprocess; its results are compared with the compiled kernels'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]

# The three ways batch-norm's backward finds a fused ReLU's mask: none, from
# the output, rebuilt from the input (relu_bias).
BN_SCRIPT = """
import numpy as np
from npsegnet.kernels.batchnorm import batchnorm2d_backward, batchnorm2d_forward_train
def bn_case(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal(3)
    b = rng.standard_normal(3)
    dout = rng.standard_normal(x.shape)
    out, mean, _, inv_std = batchnorm2d_forward_train(x, w, b, 1e-5, relu=True)
    results = {"out": out}
    for mode, kw in (("none", {}), ("out", {"out": out}), ("bias", {"relu_bias": b})):
        dx, dw, db = batchnorm2d_backward(dout, x, mean, inv_std, w, **kw)
        results.update({f"{mode}_dx": dx, f"{mode}_dw": dw, f"{mode}_db": db})
    return results
"""


def test_batchnorm_backward_runs_without_the_jit(tmp_path):
    path = tmp_path / "bn.npz"
    script = BN_SCRIPT + f"\nnp.savez({str(path)!r}, **bn_case(0))\n"
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    namespace = {}
    exec(BN_SCRIPT, namespace)  # the same case, compiled
    jitted = namespace["bn_case"](0)
    with np.load(path) as plain:
        assert sorted(plain.files) == sorted(jitted)
        for key, value in jitted.items():
            # sums over N * H * W = 40 values per channel
            assert_close(plain[key], value, reduction=40, err_msg=key)
