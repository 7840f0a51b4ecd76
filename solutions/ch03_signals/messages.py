"""What travels with every batch a loop sends: the loop's headers and the batch's turn.

The loop travels with its batches: every message carries the loop's name, its
day and its owner token (custom headers, read back from `task.request.headers`),
so a handler knows which loop a finished task belongs to, and a batch sent by
hand (no headers) ends nothing. It also carries its *turn*: which chain of
batches it belongs to and its number in that chain. The lock's refresh script
(lock.py) takes a turn only once, so a message that runs again after its worker
died between its success and its acknowledgement ends as "lost" instead of
starting a second chain.
"""
from __future__ import annotations

import uuid
from typing import NamedTuple

NAME, DAY, OWNER, CHAIN, TURN = "loop_name", "loop_day", "loop_owner", "loop_chain", "loop_turn"
LEAD = "0"          # the loop's own chain; chapter 4's helpers are chains "1", "2", ...


class Turn(NamedTuple):
    """Where a message stands in its loop: its chain, its number in that chain, its task id."""

    chain: str = LEAD
    number: int = 0
    task_id: str = ""

    @classmethod
    def of(cls, request) -> "Turn":
        headers = request.headers or {}
        return cls(str(headers.get(CHAIN, LEAD)), int(headers.get(TURN, 0)), request.id or "")

    def next(self) -> "Turn":
        """The turn after this one: the next message of the chain, with a task id of its own."""
        return Turn(self.chain, self.number + 1, str(uuid.uuid4()))

    def headers(self) -> dict:
        return {CHAIN: self.chain, TURN: self.number}


def batch_of(args) -> list[str]:
    """The batch of a batch task's (batch, day, ...) arguments."""
    return list(args[0]) if args and isinstance(args[0], (list, tuple)) else []
