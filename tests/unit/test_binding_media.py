"""Content-Type dispatch and body decoding, as the reference server answered (issue 13)."""

from __future__ import annotations

import codecs

import pytest

from qcare_ingest.binding import Format, UnsupportedMediaTypeError, bind, select_format
from qcare_ingest.binding.media import parse_content_type
from qcare_ingest.binding.text import BodyDecodeError, decode_body, decode_xml

NO_HEADER = "no Content-Type header"


@pytest.mark.parametrize(
    ("header", "fmt", "charset"),
    [
        ("application/json", Format.JSON, None),
        ("APPLICATION/JSON", Format.JSON, None),
        ("application /json", Format.JSON, None),  # the lexer skips whitespace between tokens
        ("application/json\t", Format.JSON, None),
        ("application/json; charset", Format.JSON, None),
        ("application/json; charset = utf-8", Format.JSON, "utf-8"),
        ('application/json; charset="utf-16"', Format.JSON, '"utf-16"'),  # quotes stay
        ("application/json; charset=utf-8; charset=utf-16", Format.JSON, "utf-8"),  # first
        ("application/json; x=y; CHARSET=UTF-16", Format.JSON, "UTF-16"),
        ('application/json; x="a;b"', Format.JSON, None),
        ('application/json; x="a\\"b"', Format.JSON, None),
        ("application/json; -x=~", Format.JSON, None),
        ("*/*", Format.JSON, None),
        ("text/*", Format.JSON, None),
        ("application/*", Format.JSON, None),
        ("Text/HTML", Format.JSON, None),
        ("text/json; q=0.5", Format.JSON, None),
        ("application/xml;charset=UTF-16", Format.XML, "UTF-16"),
        ("text/xml", Format.XML, None),
        ("application/x-www-form-urlencoded", Format.FORM, None),
    ],
)
def test_dispatch(header: str, fmt: Format, charset: str | None) -> None:
    assert select_format(header) == (fmt, charset)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, NO_HEADER),
        ("", NO_HEADER),
        ("application/json;", NO_HEADER),  # a header that does not parse is no header
        ("application/json; charset=", NO_HEADER),
        ("application/json;;charset=utf-8", NO_HEADER),
        ("application/json; charset=utf-8;", NO_HEADER),
        ('application/json; charset="utf-8', NO_HEADER),
        ("application/json, text/xml", NO_HEADER),
        ("application/json charset=utf-8", NO_HEADER),
        ("application/json; charset=(utf-8)", NO_HEADER),
        ("application/json; x=é", NO_HEADER),
        ("application/json; =x", NO_HEADER),
        ("application", NO_HEADER),
        ("application/*+json", "'application/*+json'"),
        ("application/problem+json", "'application/problem+json'"),
        ("*/json", "'*/json'"),
        ("-application/json", "'-application/json'"),
        ("text/plain", "'text/plain'"),
        ("multipart/form-data", "'multipart/form-data'"),
        ("application/octet-stream", "'application/octet-stream'"),
    ],
)
def test_refused(header: str | None, fragment: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        select_format(header)
    assert fragment in info.value.message


def test_parse_keeps_the_media_type_as_sent() -> None:
    parsed = parse_content_type("Text/HTML ;foo; Charset=big5")
    assert parsed is not None
    assert (parsed.media_type, parsed.charset) == ("Text/HTML", "big5")


JSON = '{"name":"陳a"}'


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        ("utf-16", JSON.encode("utf-16-le")),
        ("UTF-16", JSON.encode("utf-16-le")),
        ("utf-16", codecs.BOM_UTF8 + JSON.encode()),  # a BOM overrides the charset
        (None, codecs.BOM_UTF16_BE + JSON.encode("utf-16-be")),
        (None, codecs.BOM_UTF32_LE + JSON.encode("utf-32-le")),
        ("big5", codecs.BOM_UTF32_BE + JSON.encode("utf-32-be")),
        ("utf-16le", JSON.encode()),  # only utf-16 itself reads UTF-16
        ("unicode", JSON.encode()),
        ('"utf-16"', JSON.encode()),
        ("latin1", JSON.encode()),
        (None, JSON.encode() + b"\xe4"),  # an unfinished sequence at the end is dropped
        ("utf-16", JSON.encode("utf-16-le") + b" "),
    ],
)
def test_json_decoding(charset: str | None, body: bytes) -> None:
    assert decode_body(body, charset).startswith(JSON)


def test_json_bad_bytes_behind_a_bom_are_replaced() -> None:
    assert decode_body(codecs.BOM_UTF8 + b'{"name":"a\xff"}', None) == '{"name":"a\ufffd"}'
    with pytest.raises(BodyDecodeError):
        decode_body(b'{"name":"a\xff"}', None)
    lone = codecs.BOM_UTF16_LE + b'"\x00\x00\xd8"\x00'
    assert decode_body(lone, None) == '"\ufffd"'
    with pytest.raises(BodyDecodeError):  # the charset's own BOM keeps the strict encoding
        decode_body(lone, "utf-16")


XML = "<QCareDto><name>a</name></QCareDto>"


@pytest.mark.parametrize(
    ("charset", "body", "ok"),
    [
        (None, XML.encode(), True),
        (None, codecs.BOM_UTF8 + XML.encode(), True),
        ("utf-16", codecs.BOM_UTF16_LE + XML.encode("utf-16-le"), True),
        ("utf-16", XML.encode("utf-16-le"), True),
        (None, codecs.BOM_UTF16_LE + XML.encode("utf-16-le"), False),  # charset says UTF-8
        ("utf-16le", codecs.BOM_UTF16_LE + XML.encode("utf-16-le"), False),
        ("utf-16", codecs.BOM_UTF16_BE + XML.encode("utf-16-be"), False),  # BE never
        ("utf-16", codecs.BOM_UTF8 + XML.encode(), False),
        ("utf-16", XML.encode(), False),
        (None, b"\xef\xbb" + XML.encode(), False),
        ("utf-16", codecs.BOM_UTF16_LE + XML.encode("utf-16-le") + b"\n", False),
    ],
)
def test_xml_encoding_must_be_the_charsets(charset: str | None, body: bytes, ok: bool) -> None:
    if ok:
        assert decode_xml(body, charset) == XML
    else:
        with pytest.raises(BodyDecodeError):
            decode_xml(body, charset)


def test_xml_utf8_is_checked_as_far_as_the_reader_reads() -> None:
    with pytest.raises(BodyDecodeError) as info:
        decode_xml(XML.encode() + b" \xff", None)
    assert info.value.valid_prefix == XML + " "
    assert bind(Format.XML, None, XML.encode() + b" \xff").ok
    assert not bind(Format.XML, None, XML.encode() + b"\xff").ok
    assert bind(Format.XML, None, b"<!--\xff-->" + XML.encode()).ok  # comments: unchecked
    assert not bind(Format.XML, None, b"<QCareDto><name>\xff</name></QCareDto>").ok


def test_a_415_quotes_a_media_type_but_not_a_clients_text() -> None:
    """SPEC §5: `CHAN.TAI.MAN/A123456` parses as a media type; it is not echoed."""
    with pytest.raises(UnsupportedMediaTypeError) as plain:
        select_format("text/plain")
    assert "'text/plain'" in plain.value.message
    with pytest.raises(UnsupportedMediaTypeError) as personal:
        select_format("CHAN.TAI.MAN/A123456")
    assert "CHAN" not in personal.value.message
    assert "A123456" not in personal.value.message
