"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, say how to resume.

The first SIGINT/SIGTERM only sets a flag that the training loop reads in every step; after the
step it writes a checkpoint and stops. A second signal raises :class:`KeyboardInterrupt` at once
(abort without a new checkpoint; the one from the last epoch stays).

SIGTERM (sent by ``timeout``, schedulers, ``kill``) has no one to send a second one, so it also
stops a loop that cannot reach the end of its step: when the loop has not read the flag within
:attr:`StopSignals.GRACE_SECONDS` of the signal (it is blocked, e.g. waiting for another process to
finish building the local layer's C++ kernels), the signal is delivered again and acts as a second
one. A loop that has read the flag may take as long as it needs to finish the step and save.
"""

from __future__ import annotations

import os
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

    :attr:`received` is the first signal's number (``None`` before one). Reading it after a signal
    tells this object that the loop saw the request; a SIGTERM the loop has not seen within
    :attr:`GRACE_SECONDS` aborts with :class:`KeyboardInterrupt` (``signal_number`` set).

    Outside the main thread (where Python cannot install handlers) it does nothing and
    :attr:`received` stays ``None``.

    Examples:
        >>> with StopSignals() as stop:
        ...     stop.received is None
        True
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    GRACE_SECONDS = 10.0

    def __init__(self) -> None:
        self._received: int | None = None
        self._seen = threading.Event()  # set when the loop has read the flag, or the block ended
        self._overdue = False
        self._guard = threading.Lock()  # orders the grace timer's re-delivery against __exit__
        self._previous: dict[int, object] = {}

    @property
    def received(self) -> int | None:
        """The first stop signal received, or ``None``; reading it acknowledges the request."""
        if self._received is not None:
            self._seen.set()
        return self._received

    @received.setter
    def received(self, signum: int | None) -> None:
        self._received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        with self._guard:
            self._seen.set()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._overdue:
            if self._seen.is_set():  # re-delivered just as the block ended: nothing left to stop
                return
            os.write(2, f"layerlab: {name}: the training step did not finish within {self.GRACE_SECONDS:g} s "
                        "of the signal; stopping now, without a new checkpoint\n".encode())
            raise _aborted(f"{name} while the step was blocked: aborted without a new checkpoint", signum)
        if self._received is not None:
            raise _aborted(f"second {name}: aborted without a new checkpoint", signum)
        self._received = signum
        if signum == signal.SIGTERM:
            threading.Thread(target=self._expire, args=(signum,), name="layerlab-sigterm-grace", daemon=True).start()

    def _expire(self, signum: int) -> None:
        """Grace timer (own thread): re-deliver ``signum`` to the main thread if still unseen."""
        if self._seen.wait(self.GRACE_SECONDS):
            return
        with self._guard:
            if not self._seen.is_set():
                self._overdue = True
                signal.pthread_kill(threading.main_thread().ident, signum)


def _aborted(message: str, signum: int) -> KeyboardInterrupt:
    err = KeyboardInterrupt(message)
    err.signal_number = signum
    return err
