# Exercise copy of solutions/ch04_rate_limits/__init__.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 4: within the limits, through failures.

Chapter 3's loop, made to respect the API and to survive its workers. Read it
top to bottom: keys (what lives in Redis), limiter (one rate limit for every
worker: GCRA in a Redis script), retry_after and pause (a 429 pauses the whole
loop), retries and dead_letters (5xx and timeouts retried with backoff, the rest
given up on with a reason), circuit (the API down: pause everyone, probe, bury
nothing), leases (in flight with a deadline, and the reaper),
safety (Celery settings for crash safety), client (the API call), then the loop
(and turn: a fetch chain's turn, the stop switch, the turn and the lease, in one script).
"""
