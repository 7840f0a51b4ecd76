import pytest

from workshop import stations


def test_ids_are_stable_and_distinct():
    ids = stations.station_ids(1000)
    assert ids[:2] == ["WX00000", "WX00001"] and len(set(ids)) == 1000
    assert stations.station_ids(2, start=998) == ids[998:]


def test_readings_are_a_pure_function_of_seed_station_day_hour():
    first = stations.readings(42, "WX00007", "2026-01-15")
    assert first == stations.readings(42, "WX00007", "2026-01-15")
    assert len(first) == 24 and [r["hour"] for r in first] == list(range(24))
    assert first != stations.readings(43, "WX00007", "2026-01-15")
    assert first != stations.readings(42, "WX00008", "2026-01-15")
    assert first != stations.readings(42, "WX00007", "2026-01-16")


def test_clean_readings_are_plausible_weather():
    for station in stations.station_ids(200):
        for r in stations.readings(1, station, "2026-01-15"):
            assert stations.is_plausible(r), r


def test_glitches_follow_the_rate_and_the_key_drops_them():
    ids = stations.station_ids(200)
    glitched = [r for s in ids for r in stations.readings(5, s, "2026-01-15", glitch_rate=0.05)
                if not stations.is_plausible(r)]
    assert all(r["temperature_c"] == stations.GLITCH_TEMPERATURE for r in glitched)
    assert 0.03 < len(glitched) / (200 * 24) < 0.07
    # A glitch only replaces the temperature; the rest of the hour is the clean reading.
    station = next(s for s in ids if not all(map(stations.is_plausible,
                                                 stations.readings(5, s, "2026-01-15", 0.05))))
    summary = stations.expected_summary(station, "2026-01-15", seed=5, glitch_rate=0.05)
    assert summary["glitches"] >= 1 and summary["hours"] == 24 - summary["glitches"]
    assert summary["temp_max"] < 60


def test_expected_summary_by_hand():
    hours = stations.readings(42, "WX00003", "2026-01-15")
    temperatures = [h["temperature_c"] for h in hours]
    summary = stations.expected_summary("WX00003", "2026-01-15", seed=42)
    assert summary == {
        "station": "WX00003", "date": "2026-01-15", "hours": 24, "glitches": 0,
        "temp_min": min(temperatures), "temp_max": max(temperatures),
        "temp_mean": round(sum(temperatures) / 24, 2),
        "humidity_mean": round(sum(h["humidity_pct"] for h in hours) / 24, 2),
        "rain_total": round(sum(h["rain_mm"] for h in hours), 2),
    }


def test_same_summary_allows_rounding_only():
    expected = stations.expected_summary("WX00001", "2026-01-15", seed=42)
    assert stations.same_summary(dict(expected, temp_mean=expected["temp_mean"] + 0.01), expected)
    assert not stations.same_summary(dict(expected, temp_mean=expected["temp_mean"] + 0.1), expected)
    assert not stations.same_summary(dict(expected, hours=23), expected)
    assert not stations.same_summary({k: v for k, v in expected.items() if k != "rain_total"}, expected)


@pytest.mark.parametrize("day", ["2026-01-15", "2026-07-01"])
def test_summary_is_the_same_for_a_date_object_and_its_text(day):
    import datetime as dt
    assert (stations.expected_summary("WX00002", dt.date.fromisoformat(day), seed=1)
            == stations.expected_summary("WX00002", day, seed=1))


ALL_KINDS = stations.GLITCH_KINDS


def test_every_glitch_kind_is_drawn_and_the_ground_truth_lists_each_one():
    ids = stations.station_ids(300)
    found = [g for s in ids for g in stations.glitches(11, s, "2026-01-15", 0.05, ALL_KINDS)]
    kinds = {kind: sum(g["kind"] == kind for g in found) for kind in ALL_KINDS}
    assert all(n > 20 for n in kinds.values()), kinds
    assert 0.03 < len(found) / (300 * 24) < 0.07
    for g in found:
        served = stations.reading(11, g["station"], g["date"], g["hour"], 0.05, ALL_KINDS)
        assert (served is None) == (g["kind"] == "gap")
        if g["kind"] == "implausible":
            assert not stations.is_plausible(served)
        if g["kind"] == "spike":   # plausible, 20 degrees off the clean hour, between two clean hours
            clean = stations.reading(11, g["station"], g["date"], g["hour"])
            assert stations.is_plausible(served)
            assert abs(served["temperature_c"] - clean["temperature_c"]) == pytest.approx(stations.SPIKE_C, abs=0.11)
            assert not any(0 < abs(h["hour"] - g["hour"]) <= 2 for h in found if h["station"] == g["station"])


def test_with_the_default_kind_the_data_set_is_what_chapters_1_to_4_always_had():
    # Only "implausible": readings, glitches and summaries as before the other kinds existed.
    for station in stations.station_ids(50):
        served = stations.readings(5, station, "2026-01-15", 0.05)
        assert [r["hour"] for r in served] == list(range(24))
        assert {g["hour"] for g in stations.glitches(5, station, "2026-01-15", 0.05)} == \
               {r["hour"] for r in served if not stations.is_plausible(r)}


def test_the_expected_summary_leaves_every_glitch_hour_out():
    for station in stations.station_ids(100):
        truth = {g["hour"] for g in stations.glitches(3, station, "2026-01-15", 0.08, ALL_KINDS)}
        clean = [stations.reading(3, station, "2026-01-15", h) for h in range(24) if h not in truth]
        summary = stations.expected_summary(station, "2026-01-15", 3, 0.08, ALL_KINDS)
        assert summary["hours"] == len(clean) and summary["glitches"] == len(truth)
        assert summary["temp_max"] == max(r["temperature_c"] for r in clean)
