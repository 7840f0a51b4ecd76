import datetime as dt
import subprocess
import sys

import pytest

from workshop import settings as settings_mod
from workshop.settings import SettingsError


def test_defaults_without_environment():
    s = settings_mod.load({})
    assert s.redis_url is None and s.api_rate == 20.0 and s.api_max_batch == 50
    assert s.effective_api_url == "http://127.0.0.1:8700"
    assert s.effective_api_burst == 20
    assert s.day == dt.date(2026, 1, 15)
    assert s.flower_url == "http://127.0.0.1:5555"   # the stack's Flower seen from the host


def test_values_are_parsed_to_their_types():
    s = settings_mod.load({"API_RATE": "7.5", "API_PORT": "9000", "SEED": "3", "DAY": "2026-02-01",
                           "API_RETRY_AFTER": "HTTP-DATE", "REDIS_URL": "redis://127.0.0.1:6379/1"})
    assert (s.api_rate, s.api_port, s.seed, s.day) == (7.5, 9000, 3, dt.date(2026, 2, 1))
    assert s.api_retry_after == "http-date" and s.effective_api_burst == 8
    assert s.effective_api_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize("name, value, allowed", [
    ("API_RATE", "fast", "a number above 0"),
    ("API_RATE", "0", "a number above 0"),
    ("API_PORT", "70000", "a whole number from 1 to 65535"),
    ("API_ERROR_RATE", "1.5", "a number from 0 to 1"),
    ("API_RETRY_AFTER", "minutes", "one of seconds, http-date"),
    ("REDIS_URL", "localhost:6379", "a URL starting with redis://"),
    ("DAY", "15/01/2026", "a date as YYYY-MM-DD"),
    ("WORKSHOP_TARGET", "mine", "one of solutions, chapters"),
    ("BATCH_SIZE", "-1", "a whole number from 1"),
    ("FLOWER_URL", "flower:5555", "a URL starting with http:// or https://"),
])
def test_a_bad_value_names_the_variable_and_what_is_allowed(name, value, allowed):
    with pytest.raises(SettingsError) as caught:
        settings_mod.load({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not valid")
    assert allowed in message and "\n" not in message


def test_fault_rates_may_not_add_up_past_one():
    with pytest.raises(SettingsError, match="add up to 1.2"):
        settings_mod.load({"API_ERROR_RATE": "0.6", "API_SLOW_RATE": "0.6"})


def test_the_command_line_says_one_sentence_not_a_traceback():
    done = subprocess.run([sys.executable, "-m", "workshop", "demo"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "API_RATE": "fast"}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: API_RATE='fast' is not valid: expected a number above 0; "
                                   "set it to such a value or unset it to use the default 20.0.")
