"""Numba kernels: the fast twins of :mod:`npsegnet.reference`.

Each module pairs private ``@njit`` loops over preallocated arrays with public
functions of the same names and signatures as the reference ones, which check
their arguments, allocate the outputs and call the loops.
"""
