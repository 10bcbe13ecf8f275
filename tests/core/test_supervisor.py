"""The supervisor restarts crashed children with backoff and gives up on a crash loop."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from core.supervisor import Child, GaveUp, Supervisor


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_crashed_child_comes_back_and_the_others_are_untouched() -> None:
    said: list[str] = []
    steady = Child("steady", lambda: _python("import time; time.sleep(60)"))
    flaky = Child("flaky", lambda: _python("import time; time.sleep(60)"))
    sup = Supervisor([steady, flaky], say=said.append)
    sup.start_all()
    try:
        assert steady.proc is not None and flaky.proc is not None
        first, steady_pid = flaky.proc.pid, steady.proc.pid
        flaky.proc.kill()
        flaky.proc.wait()
        deadline = time.monotonic() + 10
        while flaky.proc.pid == first and time.monotonic() < deadline:
            sup.check()
            time.sleep(0.05)
        assert flaky.proc.pid != first and flaky.proc.poll() is None
        assert steady.proc.pid == steady_pid
        assert said[0].startswith("flaky exited with code -9; restarting in 0.5s")
        assert said[1].startswith("flaky restarted (pid")
    finally:
        sup.stop_all()
    assert steady.proc.poll() is not None and flaky.proc.poll() is not None


def test_a_crash_loop_gives_up_with_the_reason() -> None:
    said: list[str] = []
    broken = Child("broken", lambda: _python("raise SystemExit(3)"))
    sup = Supervisor([broken], say=said.append, max_crashes=3)
    sup.start_all()
    with pytest.raises(GaveUp, match="broken exited with code 3; 3 crashes in 60s"):
        sup.run(lambda: False, tick=0.05)
    assert [m.split(";")[1].strip()[:16] for m in said if "exited" in m] == [
        "restarting in 0.",
        "restarting in 1.",
    ]
