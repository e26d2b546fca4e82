"""``npsegnet bench``: npsegnet and PyTorch timed side by side, in one run.

Every row is measured for both frameworks with the same shapes, the same
thread count and the same protocol (warm-up, then the median of ``--repeat``
runs), next to two probes of what the machine can do at best, so that a time
reads as a fraction of the peak:

* **SGEMM probe**: ``np.matmul`` of two 4096 x 4096 float32 matrices, the
  rate (GFLOP/s) that a compute-bound row (convolution, training step) is
  compared with;
* **copy probe**: a large float32 array copied by ``--threads`` threads, the
  bandwidth (GB/s, bytes read + written) that a memory-bound row (pooling,
  unpooling, batch-norm, ReLU, loss) is compared with.

Rows: each layer's forward and backward, the SegNet-Basic training step and
inference, the SegNet (VGG16) training step, and the time to first result of a
new process, cold (empty Numba cache) and warm. The goals of issue 5 are
checked at the end (pass / FAIL / n/a). The whole-model rows measure the
models :func:`npsegnet.models.build_model` builds (rows named by their
registry names, ``segnet-basic.train.360x480.b4``); PyTorch runs the same
models turned into ``torch.nn`` by :func:`npsegnet.models.torch_module`.

Isolation. The command itself imports neither NumPy nor PyTorch for its
measurements: every measurement runs in a child process
(``python -m npsegnet.bench --worker TASK``, :mod:`~npsegnet.bench.worker`) started with
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` set to ``--threads`` before the interpreter starts, which
is the only reliable way to size OpenBLAS's pool (it is fixed when NumPy is
imported). Each whole-model row runs in a fresh process per framework, so its
peak resident memory (``VmHWM``) belongs to that model alone, and npsegnet's
layer rows never share a process with PyTorch's OpenMP threads. The
``--in-process`` mode (used by the tests) sets the thread counts at run time
instead: ``numba.set_num_threads``, ``torch.set_num_threads`` and OpenBLAS's
own ``openblas_set_num_threads`` found by ``ctypes`` in the loaded library.

One module per topic
--------------------
:mod:`~npsegnet.bench.rows`
    What runs on which shapes, and its work (FLOPs or bytes).
:mod:`~npsegnet.bench.timing`
    The timing protocol and the SGEMM and copy probes.
:mod:`~npsegnet.bench.machine`
    Thread pools, peak memory, CPU and software.
:mod:`~npsegnet.bench.layer_rows`, :mod:`~npsegnet.bench.model_rows`,
:mod:`~npsegnet.bench.startup`
    The measurements of each kind of row.
:mod:`~npsegnet.bench.protocol`, :mod:`~npsegnet.bench.worker`
    Child processes: the task format and carrying a task out.
:mod:`~npsegnet.bench.run`, :mod:`~npsegnet.bench.goals`, :mod:`~npsegnet.bench.text`
    The whole benchmark, its goals and its text report.
:mod:`~npsegnet.bench.cli`
    ``npsegnet bench``.

Nothing here imports NumPy, Numba or PyTorch at import time.
"""

from .cli import add_arguments, run
from .goals import evaluate_goals, finish_row
from .machine import set_threads, thread_env
from .protocol import RESULT_MARK
from .rows import (
    NARROW,
    SIZES,
    RowSpec,
    build_rows,
    conv_flops,
    model_convs,
    model_forward_flops,
    select_rows,
)
from .run import SCHEMA, run_benchmark
from .text import align, format_report
from .worker import _run_task, _worker_main

__all__ = [
    "NARROW",
    "RESULT_MARK",
    "SCHEMA",
    "SIZES",
    "RowSpec",
    "_run_task",
    "_worker_main",
    "add_arguments",
    "align",
    "build_rows",
    "conv_flops",
    "evaluate_goals",
    "finish_row",
    "format_report",
    "model_convs",
    "model_forward_flops",
    "run",
    "run_benchmark",
    "select_rows",
    "set_threads",
    "thread_env",
]
