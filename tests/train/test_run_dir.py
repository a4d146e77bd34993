"""StopRequest: the signals that ask a run to stop become a flag checked between steps."""

from __future__ import annotations

import os
import signal

import pytest

from vqkit.train.run_dir import StopRequest


def test_sigterm_sets_the_flag_however_often_it_arrives():
    """Slurm signals every process of the job and torchrun forwards its own SIGTERM too: the worker
    sees two or more, and must still finish its step and save (no KeyboardInterrupt mid-step)."""
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested


def test_a_second_ctrl_c_stops_at_once():
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest():
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
