"""``python -m npsegnet.bench --worker TASK``: a measuring child process."""

import sys

from .worker import _worker_main

sys.exit(_worker_main(sys.argv[1:]))
