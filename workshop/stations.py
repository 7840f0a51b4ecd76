"""The data set and its answer key.

Every hourly reading is a pure function of (seed, station, day, hour): the fake
API serves it, and `expected_summary` computes each daily summary from the same
function without asking the API or any pipeline. Tests compare a pipeline's
results with it.

A sensor glitch is also a pure function of (seed, station, day, hour), given the
glitch rate and the kinds the API injects (`GLITCH_KINDS`):

- "implausible": the hour's temperature is 999.9, outside what weather can do
  (the only kind by default, and the only one chapters 1-4 meet);
- "spike": the temperature jumps 20 degrees from both neighbouring hours and
  back, still plausible: only a rule that compares neighbours finds it (a spike
  is drawn only with two clean hours on each side, so never at hour 0 or 23;
  elsewhere the draw is "implausible");
- "gap": the hour is missing from the readings.

A correct pipeline leaves glitch hours out of the summary and counts them
(`glitches` = 24 - hours); the expected summary does the same, from
`glitches` (the ground truth), so it never depends on a pipeline's rules.
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
GLITCH_KINDS = ("implausible", "spike", "gap")
DEFAULT_GLITCH_KINDS = ("implausible",)
SPIKE_C = 20.0   # a spike's jump; natural neighbours differ by under 7 degrees, so no rule confuses the two
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


def _glitch_draw(seed: int, station: str, day: str, hour: int) -> float:
    return uniforms(seed, station, day, hour, n=5)[4]


def glitch_kind(seed: int, station: str, day: dt.date | str, hour: int, glitch_rate: float = 0.0,
                kinds: tuple[str, ...] = DEFAULT_GLITCH_KINDS) -> str | None:
    """The kind of glitch of this hour (one of `kinds`), or None for a clean hour."""
    day = _as_day(day)
    draw = _glitch_draw(seed, station, day, hour)
    if draw >= glitch_rate:
        return None
    kind = kinds[min(len(kinds) - 1, int(draw / glitch_rate * len(kinds)))]
    if kind == "spike" and (not 1 <= hour <= 22 or any(_glitch_draw(seed, station, day, h) < glitch_rate
                                                       for h in (hour - 2, hour - 1, hour + 1, hour + 2)
                                                       if 0 <= h < 24)):
        # A spike is a jump from two clean neighbours, each with a clean hour beyond: elsewhere no rule
        # could tell it (or the clean hour between two spikes) from the weather.
        return "implausible"
    return kind


def _clean_reading(seed: int, station: str, day: str, hour: int) -> dict:
    base, amplitude, humidity, wetness = _station_climate(seed, station)
    noise_t, noise_h, rain_p, rain_x, _ = uniforms(seed, station, day, hour, n=5)
    # A diurnal cycle that peaks mid-afternoon, plus noise.
    temperature = base + amplitude * math.sin((hour - 9) / 24 * 2 * math.pi) + 4 * (noise_t - 0.5)
    rain = round(8 * rain_x**2, 1) if rain_p < wetness else 0.0
    return {
        "hour": hour,
        "temperature_c": round(temperature, 1),
        "humidity_pct": round(min(100.0, humidity + 30 * (noise_h - 0.5) + (15 if rain else 0)), 1),
        "rain_mm": rain,
    }


def reading(seed: int, station: str, day: dt.date | str, hour: int, glitch_rate: float = 0.0,
            kinds: tuple[str, ...] = DEFAULT_GLITCH_KINDS) -> dict | None:
    """One hourly reading: temperature (°C), relative humidity (%) and rain (mm), rounded to 0.1.

    None for a "gap" glitch: the API serves no reading for that hour."""
    day = _as_day(day)
    clean = _clean_reading(seed, station, day, hour)
    kind = glitch_kind(seed, station, day, hour, glitch_rate, kinds)
    if kind == "implausible":
        return {**clean, "temperature_c": GLITCH_TEMPERATURE}
    if kind == "spike":   # up, unless that would leave the plausible range
        t = clean["temperature_c"]
        return {**clean, "temperature_c": round(t + SPIKE_C if t + SPIKE_C <= 55 else t - SPIKE_C, 1)}
    if kind == "gap":
        return None
    return clean


def readings(seed: int, station: str, day: dt.date | str, glitch_rate: float = 0.0,
             kinds: tuple[str, ...] = DEFAULT_GLITCH_KINDS) -> list[dict]:
    """The station's hourly readings for `day`, as the API serves them (24, less its gaps)."""
    hours = (reading(seed, station, day, hour, glitch_rate, kinds) for hour in HOURS)
    return [r for r in hours if r is not None]


def glitches(seed: int, station: str, day: dt.date | str, glitch_rate: float = 0.0,
             kinds: tuple[str, ...] = DEFAULT_GLITCH_KINDS) -> list[dict]:
    """The ground truth: every glitch hour of the station's day, {station, date, hour, kind, value}.

    `value` is the temperature served (None for a gap)."""
    day = _as_day(day)
    found = []
    for hour in HOURS:
        kind = glitch_kind(seed, station, day, hour, glitch_rate, kinds)
        if kind is not None:
            served = reading(seed, station, day, hour, glitch_rate, kinds)
            found.append({"station": station, "date": day, "hour": hour, "kind": kind,
                          "value": None if served is None else served["temperature_c"]})
    return found


def is_plausible(r: dict) -> bool:
    return all(low <= r[field] <= high for field, (low, high) in PLAUSIBLE.items())


def expected_summary(station: str, day: dt.date | str, seed: int, glitch_rate: float = 0.0,
                     kinds: tuple[str, ...] = DEFAULT_GLITCH_KINDS) -> dict:
    """The daily summary a correct pipeline must produce, computed straight from the data set:
    every glitch hour left out and counted.

    Means and totals are rounded to 2 decimals; compare with `same_summary`, which
    allows for a pipeline that adds the same numbers in another order.
    """
    day = _as_day(day)
    bad = {g["hour"] for g in glitches(seed, station, day, glitch_rate, kinds)}
    hours = [r for r in readings(seed, station, day, glitch_rate, kinds) if r["hour"] not in bad]
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
