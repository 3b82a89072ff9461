"""The soak (bench/soak.py), small: 200 jobs, three worker processes, one SIGKILLed every few seconds.

Every job must succeed, and every edit job must leave exactly one image row, one step, and
a result, step and output that name the same image, however often it ran. On PostgreSQL
the soak restarts the server once, half-way, when it can run a throwaway server of its
own; the shared server the other tests use is never restarted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import PrivatePostgres
from tests.conftest import PG_SERVER_URL, SKIP_PG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
JOBS = 200
#: Past this the soak is interrupted: it and its clean-up end before pytest-timeout's 300 s.
SOAK_DEADLINE_S = 250


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_200_jobs_under_sigkills_all_succeed_with_one_output_each(database: str, tmp_path: Path) -> None:
    args = ["--database", database, "--jobs", str(JOBS), "--workers", "3", "--kill-every", "3",
            "--timeout", "200", "--json", str(tmp_path / "report.json")]
    restart = False
    if database == "postgres":
        if SKIP_PG:
            pytest.skip("CHATEDIT_TEST_SKIP_POSTGRES=1")
        restart = PrivatePostgres.available()
        args += ["--postgres-server", "private", "--restart-postgres"] if restart else ["--pg-server", PG_SERVER_URL]
    code, out = _run_soak(args)
    assert code == 0, out

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["succeeded"] == JOBS and report["edits"] > 0
    assert (report["failed"], report["stuck"], report["lost"], report["second_outputs"]) == (0, 0, 0, 0)
    assert report["image_rows_per_edit_job"] == {"1": report["edits"]}, "one image row per edit job"
    assert report["kills"] >= 1, "the workers really were killed"
    assert report["server_restarts"] == (1 if restart else 0)


def _run_soak(args: list[str]) -> tuple[int, str]:
    """Run bench/soak.py; past the deadline, interrupt it (it stops its workers and its server) and fail."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "soak.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SOAK_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"the soak did not finish within {SOAK_DEADLINE_S} s:\n{out}{err[-4000:]}")
    return proc.returncode, out + err[-4000:]
