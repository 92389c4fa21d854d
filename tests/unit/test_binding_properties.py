"""The binder never raises, and whatever it accepts survives the queue encoding unchanged."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcare_ingest.binding import UnsupportedMediaTypeError, bind, select_format
from qcare_ingest.dto import QCareDto
from tests.support.strategies import bodies, content_types, form_bodies, json_bodies, xml_bodies

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(ctype: str, body: bytes) -> None:
    try:
        fmt, charset = select_format(ctype)
    except UnsupportedMediaTypeError:
        return
    result = bind(fmt, charset, body)
    for key, messages in result.errors.items():
        assert isinstance(key, str)
        assert all(isinstance(m, str) and m for m in messages)
    if result.model is not None:
        assert QCareDto.decode(result.model.encode()) == result.model


@SETTINGS
@given(content_types, bodies)
def test_any_type_any_body(ctype: str, body: bytes) -> None:
    _check(ctype, body)


@SETTINGS
@given(json_bodies(), st.sampled_from(["application/json", "text/json; charset=utf-16"]))
def test_json(body: bytes, ctype: str) -> None:
    _check(ctype, body)


@SETTINGS
@given(xml_bodies())
def test_xml(body: bytes) -> None:
    _check("application/xml", body)


@SETTINGS
@given(form_bodies())
def test_form(body: bytes) -> None:
    _check("application/x-www-form-urlencoded", body)
