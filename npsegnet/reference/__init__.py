"""The textbook: each op written as short, readable NumPy.

Nothing here is compiled or tuned. Every function has a twin of the same name
and signature in :mod:`npsegnet.kernels`, and the tests check that they agree.
"""
