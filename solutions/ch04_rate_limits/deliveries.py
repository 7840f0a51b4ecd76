"""Every delivery of a fetch batch counts, wherever its process dies: counted when the worker receives it.

Chapter 4 counts one attempt per station for each delivery of its batch (retries.py),
so that a batch that never says it failed is still dead-lettered after MAX_ATTEMPTS.
Counting in the task body misses a death that comes first: a pool process can die
before the body starts (an OOM while deserialising the message, a crashing C
extension, another task_prerun handler). With task_reject_on_worker_lost the message
comes back, is never counted, and kills a process on every delivery, for ever; and
the loop's lead waits on its lease, so the rest of the day never gets done.

Every delivery passes through one place a task cannot kill: its receipt in the
worker's *main* process. Celery sends `task_received` there (sender: the consumer,
so we pick our tasks by the request's task name), with the request: the message's
id, headers (the loop's), args and retry number. There we count (`count_delivery`;
a handler's error is logged and swallowed: a receipt that cannot reach Redis goes
uncounted, and the next delivery counts):

    broker ──> main process: task_received ──> count_delivery ──> pool process: the body fetches what it holds
                                                    │
                                                    └── holds nothing any more (given back to be split,
                                                        dead-lettered, or stale and back again):
                                                        drop it here, and take its turn of the chain

A message that holds nothing has nothing to do, but it may still kill its pool
process before it can end (and so it would come back for ever), and its turn of
the chain would never be taken. So the main process drops it: the task id goes in
the worker's revoked set, so the request is acknowledged and discarded before any
pool process sees it (Request.execute_using_pool -> revoked()), and is taken out
again once that request is discarded (task_revoked), so a later message of the same
id is not discarded. None can be on its way meanwhile: a later message of the same
id is a retry, sent by a delivery that first handed its stations over to the retry
(fetch.retry_later), and the receipt script never drops a message while a retry of
its task holds any station of the batch. Then the main process continues the chain
from the turn the message carried, as the loop does after a hard time limit
(`after_time_limit`): the turn is taken once, so a message of that turn that still
runs somewhere ends as "lost".
"""
from __future__ import annotations

import redis
from celery.signals import task_received, task_revoked
from celery.worker import state as worker_state

from workshop.celery_app import redis_client
from ch03_signals.messages import CHAIN, DAY, LEAD, NAME, OWNER, TURN, Turn

from . import leases, retries
from .keys import for_day

_loops: list = []             # the LeasedLoops whose fetch deliveries this process counts (connect)
_dropping: set[str] = set()   # task ids revoked here to drop one message, until that message is discarded


def connect(*loops) -> None:
    """Count every delivery of these loops' fetch tasks when this worker receives it; drop the empty ones."""
    _loops.extend(loop for loop in loops if loop not in _loops)
    task_received.connect(on_received, weak=False, dispatch_uid=f"{__name__}:received")
    task_revoked.connect(on_revoked, weak=False, dispatch_uid=f"{__name__}:revoked")


def on_received(sender=None, request=None, **_) -> None:
    """task_received, in the worker's main process, before the request goes to a pool process."""
    loops = [loop for loop in _loops if loop.fetch.task.name == request.type]
    args = request.args
    if not loops or len(args) < 2 or not isinstance(args[0], (list, tuple)):
        return
    batch, day = list(args[0]), args[1]
    r, holder = redis_client(), leases.token(request.id, request.request_dict.get("retries"))
    receipt = retries.count_delivery(r, for_day(day), batch, holder)
    if receipt.drop:
        drop(request)
        headers = request.request_dict
        loop = next((loop for loop in loops if loop.name == headers.get(NAME)), None)
        if loop is not None and headers.get(OWNER):   # a batch sent by hand has no chain to continue
            continue_chain(r, loop, headers, request.id)


def drop(request) -> None:
    """Acknowledge and discard this request before it reaches a pool process (see the module's docstring)."""
    _dropping.add(request.id)
    worker_state.revoked.add(request.id)


def on_revoked(sender=None, request=None, **_) -> None:
    """task_revoked, in the main process: a dropped request was discarded; its id is not revoked any more."""
    task_id = getattr(request, "id", None)
    if task_id in _dropping:
        _dropping.discard(task_id)
        worker_state.revoked.discard(task_id)


def continue_chain(r: redis.Redis, loop, headers: dict, task_id: str) -> str:
    """Take the dropped message's turn of its chain: the loop sends the chain's next batch."""
    turn = Turn(str(headers.get(CHAIN, LEAD)), int(headers.get(TURN, 0)), task_id)
    return loop.continue_chain(r, headers[DAY], headers[OWNER], turn)
