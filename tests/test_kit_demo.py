"""`make demo` runs a pipeline end to end: Redis, the fake API, a worker, progress, a summary."""
import os
import subprocess
import sys


def demo(redis_server, *args):
    env = dict(os.environ, REDIS_URL=redis_server.url, DEMO_STATIONS="60", BATCH_SIZE="7")
    done = subprocess.run([sys.executable, "-m", "workshop", "demo", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_kit_self_check_runs_end_to_end_and_reports(redis_server):
    out = demo(redis_server, "--pipeline", "workshop.selfcheck")
    assert "Pipeline: workshop.selfcheck on 60 stations" in out
    assert "stations done    60 of 60" in out
    assert "stations failed  0" in out and "stations wrong   0" in out
    assert "API calls        9 (9 accepted)" in out  # ceil(60 / 7) batches, one request each
    assert "429s             0" in out
    assert out.rstrip().endswith("OK (workshop.selfcheck): 60/60 stations equal the answer key; 9 API calls, "
                                 "none over the limit.")


def test_the_verdict_names_what_is_wrong():
    from workshop.demo import verdict
    ok, sentence = verdict({"stations": 10, "done": 7, "wrong": 1, "missing": 0, "dead": 2},
                           {"requests": 5, "rate_limited": 1}, "ch04_rate_limits.demo")
    assert not ok and sentence == ("NOT OK (ch04_rate_limits.demo): 7/10 stations equal the answer key, rows that "
                                   "differ from the answer key: 1; 5 API calls, 1 refused with a 429 (over the "
                                   "limit); 2 dead letters (stations given up on, each with its reason).")


def test_the_default_demo_is_the_last_chapter_with_one(redis_server):
    from workshop.demo import pipeline_module
    module = pipeline_module()
    expected = module.__name__
    out = demo(redis_server)
    assert f"Pipeline: {expected} on 60 stations" in out
    assert f"\nOK ({expected}): 60/60 stations equal the answer key; " in out
    if hasattr(module, "story"):   # the chapter's own summary, one table: its runs against the API's /_stats
        assert "stations done    " not in out, "one summary, not the kit's as well"
        ours = next(line for line in out.splitlines() if line.startswith("the day, ours")).split()
        theirs = next(line for line in out.splitlines() if line.startswith("the API (/_stats)")).split()
        # ours: done, requests, 429s, cost; the API's: requests, 429s, bill
        assert ours[-3:] == theirs[-5:-2] and theirs[-2:] == ["equal:", "reconciled"], (ours, theirs)
        assert f"; {ours[-3]} API calls, none over the limit" in out, "the verdict's figures are the table's"
        assert "budget spent" in out and "finished" in out, "a budget that runs out, then a run that finishes"
        assert "readings flagged" in out and "reports: " in out
