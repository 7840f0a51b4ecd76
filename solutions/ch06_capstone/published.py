"""The API's published terms in this process's environment for one measurement, given back after.

The pipelines read the limit and the batch from the settings (API_RATE, API_BURST, API_MAX_BATCH) at each
kick, and worker processes inherit them when they start: a measurement must publish the limit of the API it
runs against, and must not leave it behind for the next one (a notebook runs several)."""
from __future__ import annotations

from workshop import settings as settings_mod

NAMES = ("API_RATE", "API_BURST", "API_MAX_BATCH", "CH04_WINDOW")


def terms(**values: str):
    """Set `values` (e.g. API_RATE="10") for the block; every name in NAMES is as before afterwards."""
    return settings_mod.environment(values, restore=NAMES)


def of(config) -> dict[str, str]:
    """An ApiConfig's limit and batch, as the settings spell them."""
    return {"API_RATE": f"{config.rate:g}", "API_BURST": str(config.burst), "API_MAX_BATCH": str(config.max_batch)}
