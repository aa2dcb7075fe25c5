"""Lenient HL7 timestamps, always Asia/Tokyo."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mappers.fhirtime import datetime_text
from storage.timestamps import parse_ts


@pytest.mark.parametrize("text,fhir,precision", [
    ("19480405", "1948-04-05", "day"),
    ("201112202100", "2011-12-20T21:00:00+09:00", "minute"),
    ("20111220224447", "2011-12-20T22:44:47+09:00", "second"),
    ("20111220224447.3399", "2011-12-20T22:44:47.339+09:00", "millis"),
    ("20110701113813225", "2011-07-01T11:38:13.225+09:00", "millis"),
    ("200802031630123", "2008-02-03T16:30:12.300+09:00", "millis"),
    ("20240401123000.123+0900", "2024-04-01T12:30:00.123+09:00", "millis"),
    ("20240401123000+0000", "2024-04-01T21:30:00+09:00", "second"),
    ("202306132430", "2023-06-14T00:30:00+09:00", "minute"),
    ("202306134700", "2023-06-14T23:00:00+09:00", "minute"),
    ("201112200000", "2011-12-20", "day"),
    ("20111220000000", "2011-12-20", "day"),
    ("201112", "2011-12", "month"),
    ("2011", "2011", "year"),
])
def test_forms(text: str, fhir: str, precision: str) -> None:
    t = parse_ts(text)
    assert t is not None and datetime_text(t) == fhir and t.precision == precision


@pytest.mark.parametrize("text", ["", None, "abc", "20240230", "202401011260", "20240101480000", "2024-01-01"])
def test_invalid(text) -> None:
    assert parse_ts(text) is None


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from([8, 12, 14, 17]).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)) | st.builds(
    lambda y, mo, d, h, mi, s, f, n: f"{y:04d}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}{f:03d}"[:n],
    st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 48),
    st.integers(0, 60), st.integers(0, 60), st.integers(0, 999), st.sampled_from([8, 12, 14, 17])))
@example("999912312400")  # hour 24 of the last representable day: None, not OverflowError
@example("000101010000")
def test_digit_fast_path_equals_the_general_parser(text):
    """The regex-free path for all-digit times gives exactly what the general parser gives."""
    from storage.timestamps import _parse_digits, _parse_general
    fast, general = _parse_digits(text), _parse_general(text)
    assert fast == general
    if fast is not None and general is not None:
        assert fast.value.isoformat() == general.value.isoformat()
        assert fast.value.utcoffset() == general.value.utcoffset()


@pytest.mark.parametrize("text", ["999912312400", "99991231235959-0100", "00010101000000+0900"])
def test_times_past_the_representable_range_are_unparseable_not_errors(text):
    assert parse_ts(text) is None
