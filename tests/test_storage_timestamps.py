"""Lenient HL7 timestamps, always Asia/Tokyo."""

import pytest

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
