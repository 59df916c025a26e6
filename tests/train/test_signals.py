"""StopSignals in-process: what the first and a second signal do, and SIGTERM's grace."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from layerlab.train.signals import StopSignals

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers need the main thread")


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(StopSignals, "GRACE_SECONDS", 0.3)


def sleep_in_steps(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)


def test_a_sigterm_the_loop_never_reads_aborts_after_the_grace(short_grace, capfd):
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM while the step was blocked: aborted without a new "
                                                "checkpoint") as info:
        with StopSignals():
            os.kill(os.getpid(), signal.SIGTERM)
            sleep_in_steps(10)  # a blocked step
    assert time.monotonic() - start < 5
    assert info.value.signal_number == signal.SIGTERM
    assert ("layerlab: SIGTERM: the training step did not finish within 0.3 s of the signal; stopping now, "
            "without a new checkpoint") in capfd.readouterr().err


def test_a_sigterm_the_loop_has_read_lets_the_step_finish(short_grace):
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        sleep_in_steps(0.05)
        assert stop.received == signal.SIGTERM  # the loop sees the request
        sleep_in_steps(1.0)  # finishing the step and saving may take longer than the grace
    assert stop.received == signal.SIGTERM


def test_sigint_waits_for_the_step_however_long(short_grace):
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        sleep_in_steps(1.0)
    assert stop.received == signal.SIGINT


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_aborts_at_once(signum):
    with pytest.raises(KeyboardInterrupt, match=f"second {signal.Signals(signum).name}: aborted without a new "
                                                "checkpoint") as info:
        with StopSignals() as stop:
            os.kill(os.getpid(), signum)
            sleep_in_steps(0.05)
            assert stop.received == signum
            os.kill(os.getpid(), signum)
            sleep_in_steps(5)
    assert info.value.signal_number == signum


def test_handlers_are_restored_and_a_late_grace_timer_is_harmless(short_grace):
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals():
        os.kill(os.getpid(), signal.SIGTERM)
        sleep_in_steps(0.05)
    sleep_in_steps(0.6)  # past the grace: the timer must not deliver SIGTERM to the restored handler
    assert signal.getsignal(signal.SIGTERM) is before
