"""``npsegnet train``: train SegNet-Basic or SegNet, reproducibly and resumably.

One epoch is: shuffle the training set with the run's generator, and for each
mini-batch normalise the input, run the model forward, the softmax
cross-entropy loss (class weights by median frequency balancing, unlabelled
pixels ignored), backward, and an SGD step (:class:`npsegnet.optim.SGD`, with
Caffe's bias multipliers). After each epoch the batch-norm statistics are
recomputed over the training set (as SegNet-Tutorial's
``compute_bn_statistics.py`` does before testing), the model is evaluated on
the validation split, and a checkpoint is written (``latest.npz``; also
``best.npz`` when validation mIoU improves).

Reproducibility. The model's initial weights come from ``seed``, the shuffling
from ``np.random.default_rng(seed)``, whose state is stored in every
checkpoint; the synthetic data have fixed seeds. A run resumed from a
checkpoint continues with the same weights, momentum buffers, generator state
and history, so that it ends with bit-for-bit the weights of a run that was
never interrupted (with the same number of threads: Numba's parallel loops
split the work by thread).

Interruption. Ctrl-C stops the run at the end of the current step and saves a
checkpoint of that step (``latest.npz``, with the step number inside the
epoch); ``--resume`` continues from it exactly. A second Ctrl-C aborts at once
(keeping the last checkpoint written).

One module per topic
--------------------
:mod:`~npsegnet.train.config`
    :class:`TrainConfig`, the defaults, the checks, the JSON of a config.
:mod:`~npsegnet.train.prepare`
    Setting a run up: config and resume, data, model, normalisation and
    class weights, loss and optimiser.
:mod:`~npsegnet.train.loop`
    The epochs, validation and checkpoints: :func:`train`.
:mod:`~npsegnet.train.bn`
    :func:`recompute_bn_statistics`.
:mod:`~npsegnet.train.interrupt`
    Ctrl-C: :class:`TrainingInterrupted`.
:mod:`~npsegnet.train.figures`
    :func:`curves` and the run's figures, drawn by :mod:`npsegnet.viz`.
:mod:`~npsegnet.train.cli`
    ``npsegnet train``.
"""

from .bn import recompute_bn_statistics
from .cli import add_arguments, run
from .config import (
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    RESUMABLE_OVERRIDES,
    SYNTHETIC_LR,
    TrainConfig,
)
from .figures import curves
from .interrupt import TrainingInterrupted
from .loop import train

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "RESUMABLE_OVERRIDES",
    "SYNTHETIC_LR",
    "TrainConfig",
    "TrainingInterrupted",
    "add_arguments",
    "curves",
    "recompute_bn_statistics",
    "run",
    "train",
]
