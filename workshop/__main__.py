"""`python -m workshop COMMAND ...`: the kit's command line."""
from __future__ import annotations

import importlib
import sys

from .redis_provider import NoRedisError
from .settings import SettingsError

COMMANDS = {
    "api": ("workshop.api", "run the fake Stations API"),
    "bench-api": ("workshop.api_bench", "measure the fake API's throughput"),
    "demo": ("workshop.demo", "run the most advanced chapter's pipeline end to end"),
    "check-env": ("workshop.checkenv", "check the prerequisites"),
    "exercises": ("workshop.exercises", "build | check | list the exercise copies in chapters/"),
    "catch-up": ("workshop.catch_up", "N: copy the solutions of the chapters before N into chapters/"),
    "offline-kit": ("workshop.offline_kit", "--out DIR: wheels, images and slides for a room without Wi-Fi"),
    "watch": ("workshop.watch", "a live view of a day: stages, leases, rate, dead letters, budget, the loop"),
    "stack-day": ("workshop.stack_day", "run|start|check|status|kick [N]: a day on the compose stack (`make day`)"),
}


def usage() -> str:
    return "usage: python -m workshop COMMAND [options]\n" + "\n".join(
        f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return 2
    try:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:]) or 0
    except (SettingsError, NoRedisError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
