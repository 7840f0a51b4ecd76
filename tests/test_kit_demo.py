"""`make demo` runs a pipeline end to end: Redis, the fake API, a worker, progress, a summary."""
import os
import subprocess
import sys


def test_demo_runs_end_to_end_and_reports(redis_server):
    env = dict(os.environ, REDIS_URL=redis_server.url, DEMO_STATIONS="60", BATCH_SIZE="7")
    done = subprocess.run([sys.executable, "-m", "workshop", "demo"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "stations done    60 of 60" in out
    assert "stations failed  0" in out and "stations wrong   0" in out
    assert "API calls        9 (9 accepted)" in out  # ceil(60 / 7) batches, one request each
    assert "429s             0" in out
