# Exercise copy of solutions/ch05_reporting/quality.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Data quality at the boundary: every batch of readings is checked as it enters the pipeline.

The rules are a declared schema (pandera), not hand-written loops: each says what
a good hour looks like, and pandera reports every hour that breaks one. A
finding names the station, the hour, the rule and the value:

    implausible  a value outside what weather can do (-60..60 degC, 0..100 %, 0..200 mm)
    missing      an hour served with a null value
    spike        a temperature more than SPIKE_C from both neighbouring hours, the same way
                 (a jump and back: a sensor glitch, not weather; checked where both neighbours
                 are good, so never at hour 0 or 23, which have one)
    gap          an hour the API did not serve at all (not a row: found by the hours that are there)

Policy: **exclude**. A flagged hour is left out of the readings the pipeline stores,
and the summary counts it as a glitch (glitches = 24 - hours): the summary is the
answer key's, and the finding keeps the value, so nothing is lost silently. The
findings are kept per day (keys.quality), for the report.
"""
from __future__ import annotations

import json
from typing import Callable

import pandas as pd
import pandera.pandas as pa
import redis

from workshop.celery_app import redis_client
from workshop.stations import HOURS, PLAUSIBLE

from .keys import quality as quality_key

RULES = ("implausible", "missing", "spike", "gap")
SPIKE_C = 10.0   # natural neighbours differ by under 7 degrees; the API's spikes jump 20


def _in_plausible_range(field: str) -> pa.Check:
    low, high = PLAUSIBLE[field]
    return pa.Check.in_range(low, high, error="implausible")   # the error names the rule in a failure


def _good_temperature(frame: pd.DataFrame) -> pd.Series:
    """The temperature, NaN where it is outside what weather can do: such a value is no hour's neighbour."""
    low, high = PLAUSIBLE["temperature_c"]
    return frame["temperature_c"].where(frame["temperature_c"].between(low, high))


def _neighbour(frame: pd.DataFrame, values: pd.Series, step: int) -> pd.Series:
    """Each row's `values` at the hour `step` away (-1: the hour before, +1: after) in the same station's day;
    NaN where that hour was not served (a gap: the row there is another hour, or another station)."""
    by_station = frame["station"]
    there = frame["hour"].groupby(by_station).shift(-step)
    return values.groupby(by_station).shift(-step).where(there == frame["hour"] + step)


def _not_a_spike(frame: pd.DataFrame) -> pd.Series:
    """True for every hour that is not a spike: compared with its neighbours of the same station."""
    # exercise 5.3: False exactly for the hours whose temperature is more than SPIKE_C above both neighbouring hours, or more than SPIKE_C below both; a neighbour that is missing (a gap: see _neighbour), null or implausible (see _good_temperature) makes the hour uncheckable (True)
    raise NotImplementedError("exercise 5.3: False exactly for the hours whose temperature is more than SPIKE_C above both neighbouring hours, or more than SPIKE_C below both; a neighbour that is missing (a gap: see _neighbour), null or implausible (see _good_temperature) makes the hour uncheckable (True)")


SCHEMA = pa.DataFrameSchema(
    {
        "station": pa.Column(str),
        "hour": pa.Column(int, pa.Check.isin(list(HOURS))),
        "temperature_c": pa.Column(float, _in_plausible_range("temperature_c"), nullable=False),
        "humidity_pct": pa.Column(float, _in_plausible_range("humidity_pct"), nullable=False),
        "rain_mm": pa.Column(float, _in_plausible_range("rain_mm"), nullable=False),
    },
    checks=[pa.Check(_not_a_spike, name="spike")],
    coerce=True,
)


def frame(readings: dict[str, list[dict]]) -> pd.DataFrame:
    """{station: hourly readings} as one table, a row per station and hour served, sorted."""
    rows = [{"station": station, **hour} for station, hours in readings.items() for hour in hours]
    columns = ["station", "hour", *PLAUSIBLE]
    table = pd.DataFrame(rows, columns=columns).astype({field: "float64" for field in PLAUSIBLE})
    return table.sort_values(["station", "hour"], ignore_index=True)


def _rule_of(check: str) -> str:
    # pandera names a null found in a non-nullable column "not_nullable"
    return "missing" if check == "not_nullable" else check


def check(readings: dict[str, list[dict]]) -> list[dict]:
    """Every finding in a batch of readings: [{station, hour, rule, value}], by station and hour."""
    table = frame(readings)
    findings = {}
    try:
        SCHEMA.validate(table, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        for _, case in cases.iterrows():
            row = table.loc[int(case["index"])]
            rule = _rule_of(str(case["check"]))
            # A spike is the whole row's failure (pandera names any column): its value is the temperature.
            column = case["column"] if rule != "spike" and case["column"] in PLAUSIBLE else "temperature_c"
            value = row[column]
            findings[row["station"], int(row["hour"]), rule] = None if pd.isna(value) else float(value)
    for station, hours in readings.items():
        served = {hour["hour"] for hour in hours}
        for hour in HOURS:
            if hour not in served:
                findings[station, hour, "gap"] = None
    return [{"station": station, "hour": hour, "rule": rule, "value": value}
            for (station, hour, rule), value in sorted(findings.items())]


def exclude(readings: dict[str, list[dict]], findings: list[dict]) -> dict[str, list[dict]]:
    """The readings without the hours a finding flags (the policy: exclude, count as a glitch)."""
    flagged = {(f["station"], f["hour"]) for f in findings}
    return {station: [hour for hour in hours if (station, hour["hour"]) not in flagged]
            for station, hours in readings.items()}


def record(r: redis.Redis, day: str, stations: list[str], findings: list[dict]) -> None:
    """The batch's findings, per station (a station checked clean has none): a refetch writes the same."""
    by_station = {station: [] for station in stations}
    for finding in findings:
        by_station[finding["station"]].append(finding)
    with r.pipeline(transaction=False) as p:
        clean = [station for station, found in by_station.items() if not found]
        if clean:
            p.hdel(quality_key(day), *clean)
        found = {station: json.dumps(found) for station, found in by_station.items() if found}
        if found:
            p.hset(quality_key(day), mapping=found)
        p.execute()


def findings(r: redis.Redis, day: str) -> list[dict]:
    """Every finding of the day, by station and hour."""
    return sorted((f for raw in r.hvals(quality_key(day)) for f in json.loads(raw)),
                  key=lambda f: (f["station"], f["hour"], f["rule"]))


def screening(call: Callable[..., dict]) -> Callable[..., dict]:
    """`call` (batch, day, settings) -> readings, with every batch checked, its findings recorded, and
    the flagged hours left out of what it returns."""
    def screened(batch: list[str], day: str, settings=None) -> dict:
        readings = call(batch, day, settings)
        found = check(readings)
        record(redis_client(), day, list(readings), found)
        return exclude(readings, found)
    return screened
