"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, say how to resume.

The first SIGINT/SIGTERM only sets a flag that the training loop reads after each step; a second
one raises :class:`KeyboardInterrupt` at once (abort without a new checkpoint; the one from the last
epoch stays).
"""

from __future__ import annotations

import signal
import threading

from layerlab.errors import TrainingError

__all__ = ["StopSignals", "TrainingInterrupted"]


class TrainingInterrupted(TrainingError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint.

    Attributes:
        signal_number: the signal that stopped it (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class StopSignals:
    """Context manager that turns SIGINT/SIGTERM into a stop request.

    Outside the main thread (where Python cannot install handlers) it does nothing and
    :attr:`received` stays ``None``.

    Examples:
        >>> with StopSignals() as stop:
        ...     stop.received is None
        True
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborted without a new checkpoint")
        self.received = signum
