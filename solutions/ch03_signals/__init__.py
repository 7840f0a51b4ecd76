"""Chapter 3: pipelines that trigger themselves, with Celery signals.

Chapter 2's segments (fetch -> transform -> persist), driven by a loop instead
of a timer: when a batch task ends, a `task_success` (or `task_failure`)
handler sends the next batch while work is left, then hands over to the next
segment. One loop per pipeline, under a Redis lock; a watchdog on beat restarts
a loop that died silently; signals also keep a history and an error log that
the pipeline's code knows nothing about.

Read it top to bottom: keys (what lives in Redis), lock (one owner at a time),
tasks (chapter 2's batch logic as loop steps), messages (what each batch
carries: the loop's headers, its turn), loop (the machinery: Segment, Loop),
failures and progress_report (what the loop does when a batch fails, what it
shows), pipeline (this chapter's loop), watchdog, history and error_log (the
secondary work), app (the Celery app and its one beat entry), demo, benchmark.
"""
