"""Ctrl-C during training: finish the step, save a checkpoint, then stop."""

from __future__ import annotations

import signal
import sys
import threading

__all__ = ["TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`train` after Ctrl-C, once the checkpoint is saved.

    Attributes
    ----------
    checkpoint : Path or None
        The checkpoint to resume from.
    history : list of dict
        The epochs completed so far.
    """

    def __init__(self, message: str, checkpoint=None, history=None):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.history = history or []


class _SigintGuard:
    """First Ctrl-C: finish the current step, then stop. Second: abort now."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        print(
            "\nCtrl-C: stopping after this step and saving a checkpoint "
            "(press again to abort at once)",
            file=sys.stderr,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
