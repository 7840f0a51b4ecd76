"""From 24 hourly readings to one daily summary: the transform every chapter uses."""
from __future__ import annotations

from workshop.stations import HOURS, PLAUSIBLE


def plausible(reading: dict) -> bool:
    """A sensor glitch (a value outside what weather can do) is dropped, not averaged in."""
    return all(low <= reading[field] <= high for field, (low, high) in PLAUSIBLE.items())


def summarise(station: str, day: str, readings: list[dict]) -> dict:
    hours = [r for r in readings if plausible(r)]
    temperatures = [r["temperature_c"] for r in hours]
    mean = (lambda values: round(sum(values) / len(values), 2) if values else None)
    return {
        "station": station,
        "date": day,
        "hours": len(hours),
        "glitches": len(HOURS) - len(hours),   # hours dropped, or never served
        "temp_min": min(temperatures, default=None),
        "temp_max": max(temperatures, default=None),
        "temp_mean": mean(temperatures),
        "humidity_mean": mean([r["humidity_pct"] for r in hours]),
        "rain_total": round(sum(r["rain_mm"] for r in hours), 2),
    }
