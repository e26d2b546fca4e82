"""Figures: label colours, predictions, training curves, pooling indices.

Every plotting function returns a :class:`matplotlib.figure.Figure` built
without :mod:`matplotlib.pyplot`, so no GUI backend is needed or selected
(importing this package leaves the backend alone, which keeps notebooks'
inline backend working) and figures are freed like any Python object instead
of piling up in pyplot's registry. Save one with :func:`save_figure`. In a
notebook, run ``%matplotlib inline`` once (it teaches IPython to draw any
``Figure``); then a figure as a cell's last value, or ``display(fig)``, shows it.

One module per topic
--------------------
:mod:`~npsegnet.viz.colors`
    :data:`CAMVID_PALETTE`, :func:`palette`, :func:`label_to_color`,
    :func:`overlay`.
:mod:`~npsegnet.viz.predictions`
    :func:`plot_predictions`.
:mod:`~npsegnet.viz.curves`
    :func:`plot_training_curves`.
:mod:`~npsegnet.viz.scores`
    :func:`plot_confusion_matrix`, :func:`plot_per_class_iou`.
:mod:`~npsegnet.viz.pooling`
    :func:`plot_pooling_indices`, :func:`plot_unpooled_and_convolved`.
:mod:`~npsegnet.viz.gradcheck`
    :func:`plot_gradcheck`.
:mod:`~npsegnet.viz.files`
    :func:`save_figure`.
:mod:`~npsegnet.viz.uncertainty`
    :func:`plot_uncertainty`, :func:`plot_mc_samples`,
    :func:`plot_uncertainty_maps`, :func:`plot_uncertainty_by_class`,
    :func:`plot_reliability`,
    :func:`plot_accuracy_vs_samples` (Monte-Carlo dropout).

Label maps are ``(H, W)`` integer arrays; a label ``k`` is drawn in
``palette[k]``, and ``ignore_index`` pixels (unlabelled) in black.
"""

from .colors import CAMVID_PALETTE, label_to_color, overlay, palette
from .curves import plot_training_curves
from .files import save_figure
from .gradcheck import plot_gradcheck
from .pooling import plot_pooling_indices, plot_unpooled_and_convolved
from .predictions import plot_predictions
from .scores import plot_confusion_matrix, plot_per_class_iou
from .uncertainty import (
    plot_accuracy_vs_samples,
    plot_mc_samples,
    plot_reliability,
    plot_uncertainty,
    plot_uncertainty_by_class,
    plot_uncertainty_maps,
)

__all__ = [
    "CAMVID_PALETTE",
    "label_to_color",
    "overlay",
    "palette",
    "plot_confusion_matrix",
    "plot_gradcheck",
    "plot_per_class_iou",
    "plot_pooling_indices",
    "plot_predictions",
    "plot_training_curves",
    "plot_unpooled_and_convolved",
    "plot_accuracy_vs_samples",
    "plot_mc_samples",
    "plot_reliability",
    "plot_uncertainty",
    "plot_uncertainty_by_class",
    "plot_uncertainty_maps",
    "save_figure",
]
