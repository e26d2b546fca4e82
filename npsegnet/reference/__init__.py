"""The textbook: each op written as short, readable NumPy.

Nothing here is compiled or tuned, and nothing here imports a kernel: the
notebooks, the exercises and the tests read it. Every op has a twin of the
same name and signature in :mod:`npsegnet.kernels`, and the tests check that
they agree: ``conv2d_*``, ``conv2d_fft_*`` (whole-image FFTs beside the
fast twin's tiles), ``conv_transpose2d_*``, ``upsample2d_*``,
``maxpool2d_*``/``maxunpool2d_*``, ``batchnorm2d_*``, ``relu_*``,
``dropout_mask``/``dropout_*`` and ``softmax_cross_entropy_*``.

The argument checks both twins share (shapes, dtypes, index ranges, the
pooled size :func:`~npsegnet.reference.pool.pool_output_size`, the loss's
inputs) live below them in ``npsegnet._checks``; the modules here re-export
the ones a reader needs.
"""
