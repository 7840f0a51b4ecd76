import threading
import time

from workshop import progress


def test_follow_reads_counters_written_elsewhere_until_all_are_accounted_for(redis):
    progress.start(redis, "p", total=30)

    def work():
        for _ in range(10):
            progress.advance(redis, "p", done=2, failed=1)
            time.sleep(0.02)

    writer = threading.Thread(target=work)
    writer.start()
    final = progress.follow(redis, "p", timeout=10, poll=0.01)
    writer.join()
    assert final == {"total": 30, "done": 20, "failed": 10}


def test_follow_gives_up_at_the_timeout_and_returns_what_it_saw(redis):
    progress.start(redis, "p", total=5)
    progress.advance(redis, "p", done=2)
    started = time.monotonic()
    assert progress.follow(redis, "p", timeout=0.3, poll=0.05) == {"total": 5, "done": 2, "failed": 0}
    assert time.monotonic() - started < 3


def test_start_forgets_an_earlier_run(redis):
    progress.start(redis, "p", total=5)
    progress.advance(redis, "p", done=5)
    progress.start(redis, "p", total=8)
    assert progress.counters(redis, "p") == {"total": 8, "done": 0, "failed": 0}


def test_follow_stops_when_until_says_so_and_reports_what_was_done_by_then(redis):
    progress.start(redis, "p", total=10)
    asked = []

    def until():
        asked.append(1)
        if len(asked) == 3:  # the last batch ends, then `until` sees every task done
            progress.advance(redis, "p", done=4)
            return True
        return False

    assert progress.follow(redis, "p", until=until, poll=0.01) == {"total": 10, "done": 4, "failed": 0}
