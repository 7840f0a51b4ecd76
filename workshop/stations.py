"""The data set and its answer key.

Every hourly reading is a pure function of (seed, station, day, hour): the fake
API serves it, and `expected_summary` computes each daily summary from the same
function without asking the API or any pipeline. Tests compare a pipeline's
results with it.

A sensor glitch replaces an hour's temperature with an implausible value; it is
also a pure function of (seed, station, day, hour), given the glitch rate. A
correct pipeline drops implausible hours; the expected summary does the same
and counts them.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import struct
from functools import lru_cache

HOURS = range(24)
# A reading outside these bounds is a sensor glitch, not weather.
PLAUSIBLE = {"temperature_c": (-60.0, 60.0), "humidity_pct": (0.0, 100.0), "rain_mm": (0.0, 200.0)}
GLITCH_TEMPERATURE = 999.9
SUMMARY_FIELDS = ("station", "date", "hours", "glitches", "temp_min", "temp_max",
                  "temp_mean", "humidity_mean", "rain_total")


def station_id(index: int) -> str:
    """The id of the station at position `index` (0-based) of the API's listing."""
    return f"WX{index:05d}"


def station_ids(count: int, start: int = 0) -> list[str]:
    """`count` station ids in listing order, from position `start`."""
    return [station_id(i) for i in range(start, start + count)]


def uniforms(*key: object, n: int) -> tuple[float, ...]:
    """`n` numbers in [0, 1), a pure function of `key` (the same on every machine and run)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8 * n).digest()
    return tuple(x / 2**64 for x in struct.unpack(f">{n}Q", digest))


def _as_day(day: dt.date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


@lru_cache(maxsize=65536)
def _station_climate(seed: int, station: str) -> tuple[float, float, float, float]:
    base, amplitude, humidity, wetness = uniforms(seed, station, "climate", n=4)
    return (-5 + 30 * base, 3 + 7 * amplitude, 45 + 40 * humidity, 0.05 + 0.3 * wetness)


def reading(seed: int, station: str, day: dt.date | str, hour: int, glitch_rate: float = 0.0) -> dict:
    """One hourly reading: temperature (°C), relative humidity (%) and rain (mm), rounded to 0.1."""
    day = _as_day(day)
    base, amplitude, humidity, wetness = _station_climate(seed, station)
    noise_t, noise_h, rain_p, rain_x, glitch = uniforms(seed, station, day, hour, n=5)
    # A diurnal cycle that peaks mid-afternoon, plus noise.
    temperature = base + amplitude * math.sin((hour - 9) / 24 * 2 * math.pi) + 4 * (noise_t - 0.5)
    rain = round(8 * rain_x**2, 1) if rain_p < wetness else 0.0
    if glitch < glitch_rate:
        temperature = GLITCH_TEMPERATURE
    return {
        "hour": hour,
        "temperature_c": round(temperature, 1),
        "humidity_pct": round(min(100.0, humidity + 30 * (noise_h - 0.5) + (15 if rain else 0)), 1),
        "rain_mm": rain,
    }


def readings(seed: int, station: str, day: dt.date | str, glitch_rate: float = 0.0) -> list[dict]:
    """The station's 24 hourly readings for `day`, as the API serves them."""
    return [reading(seed, station, day, hour, glitch_rate) for hour in HOURS]


def is_plausible(r: dict) -> bool:
    return all(low <= r[field] <= high for field, (low, high) in PLAUSIBLE.items())


def expected_summary(station: str, day: dt.date | str, seed: int, glitch_rate: float = 0.0) -> dict:
    """The daily summary a correct pipeline must produce, computed straight from the data set.

    Means and totals are rounded to 2 decimals; compare with `same_summary`, which
    allows for a pipeline that adds the same numbers in another order.
    """
    day = _as_day(day)
    hours = [r for r in readings(seed, station, day, glitch_rate) if is_plausible(r)]
    temperatures = [r["temperature_c"] for r in hours]
    return {
        "station": station,
        "date": day,
        "hours": len(hours),
        "glitches": 24 - len(hours),
        "temp_min": min(temperatures, default=None),
        "temp_max": max(temperatures, default=None),
        "temp_mean": round(sum(temperatures) / len(hours), 2) if hours else None,
        "humidity_mean": round(sum(r["humidity_pct"] for r in hours) / len(hours), 2) if hours else None,
        "rain_total": round(sum(r["rain_mm"] for r in hours), 2),
    }


def same_summary(actual: dict, expected: dict, tolerance: float = 0.011) -> bool:
    """True when `actual` has every field of `expected` with the same value (floats within rounding)."""
    for field in SUMMARY_FIELDS:
        a, e = actual.get(field), expected[field]
        if isinstance(e, float) and isinstance(a, (int, float)):
            if abs(a - e) > tolerance:
                return False
        elif a != e:
            return False
    return True
