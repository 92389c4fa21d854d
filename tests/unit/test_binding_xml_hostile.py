"""Hostile XML bodies: each is read in time and memory linear in the body (the old binder
took seconds to minutes, or gigabytes, on each of these), and what they bind is unchanged.

Time bounds are generous (a tenth of the old time or less is still far below them); memory
is measured with tracemalloc."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

from qcare_ingest.binding import BindResult, Format, bind
from qcare_ingest.binding.text import BodyDecodeError, decode_xml
from qcare_ingest.binding.xmlser import _protect_char_refs, _tag_end

MIB = 1 << 20
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def timed(body: bytes, seconds: float = 2.0) -> BindResult:
    start = time.perf_counter()
    result = bind(Format.XML, None, body)
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"{len(body)} bytes took {elapsed:.1f} s"
    return result


def refused(result: BindResult) -> bool:
    return list(result.errors) == [""] and result.model is None


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# --- a byte that does not decode: comments are looked past once (old: 128 KB, 19 s) ---


@pytest.mark.parametrize(
    "body",
    [
        b"<QCareDto>\xff" + b"<!--" * (MIB // 4),
        b"<QCareDto>\xff" + b"<!---->" * (MIB // 7),
        b"<QCareDto>" + b"<!--\xff-->" * (MIB // 8) + b"\xff<!--",
    ],
)
def test_bad_byte_with_many_comments(body: bytes) -> None:
    assert refused(timed(body))


def test_bad_bytes_are_read_only_outside_comments() -> None:
    assert (
        decode_xml(b"<a><!--\xff--><!--x\xfe-->b</a>", None)
        == "<a><!--\ufffd--><!--x\ufffd-->b</a>"
    )
    for body, prefix in [
        (b"<a><!--\xff-->\xfe", "<a><!--\ufffd-->"),
        (b"<a><!--\xff--\xfe", "<a><!--"),  # an unclosed comment is no comment
        (b"<a><!-->\xff", "<a><!-->"),  # the close must follow the opener
        (b"<a><!---->\xff<!---->", "<a><!---->"),
    ]:
        with pytest.raises(BodyDecodeError) as info:
            decode_xml(body, None)
        assert info.value.valid_prefix == prefix


# --- character references: one pass past unclosed CDATA and comments (old: 1 MB, 13 s) ---


@pytest.mark.parametrize("ref", ["&#65;", "&#1;"])
@pytest.mark.parametrize("opener", ["<!--", "<![CDATA["])
def test_references_with_many_unclosed_openers(ref: str, opener: str) -> None:
    body = f"<QCareDto>{ref}" + opener * 2000 + "a" * (4 * MIB)
    assert refused(timed(body.encode()))
    body = f"<QCareDto>{ref}" + opener * 19990 + "a" * 200_000
    assert refused(timed(body.encode()))


def test_many_references_bind_at_c_speed() -> None:
    text = "<QCareDto><name>" + "&#65;" * (MIB // 5) + "</name></QCareDto>"
    assert _protect_char_refs(text)[0] is text  # nothing to protect: nothing called back
    result = timed(text.encode(), 1.0)
    assert result.model is not None
    assert result.model.name == "A" * (MIB // 5)
    result = timed(
        ("<QCareDto><name>" + "&#1;&#x1F;" * (MIB // 10) + "</name></QCareDto>").encode()
    )
    assert result.model is not None
    assert result.model.name == "\x01\x1f" * (MIB // 10)


@pytest.mark.parametrize(
    ("text", "protected"),
    [
        ("&#1;", True),
        ("&#0000001;", True),
        ("&#00000001;", False),  # 1 to 7 digits
        ("&#x000001;", True),
        ("&#x0000001;", False),  # x and 1 to 6 hex digits
        ("&#X1;", False),
        ("&#xd800;&#55296;&#xFFFE;&#65535;&#31;&#x1f;&#11;&#xC;", True),
        ("&#9;&#10;&#13;&#32;&#65;&#x20;&#xfffd;&#65533;&#57344;", False),
        ("<!--&#1;-->", False),
        ("<![CDATA[&#1;]]>", False),
        ("<!--&#1;", True),  # an unclosed opener is no comment
        ("<![CDATA[&#1;", True),
        ("<!-->&#1;", True),
        ("<![CDATA[]]>&#1;", True),
        ("<![CDATA[<!--]]>&#1;-->", True),
        ("<!--<![CDATA[-->&#1;]]>", True),
        ("<!--<![CDATA[-->", False),
    ],
)
def test_which_references_are_protected(text: str, protected: bool) -> None:
    out, restore = _protect_char_refs(text)
    if protected:
        assert "&#" not in out
        assert restore
    else:
        assert (out, restore) == (text, {})


# --- namespace scopes are shared, not copied for each element (old: 230 KB, 1.4 GB) ---


@pytest.mark.usefixtures("traced")
def test_many_prefixes_times_many_declaring_children() -> None:
    prefixes = " ".join(f'xmlns:p{i}="u{i}"' for i in range(6000))
    body = (
        f"<QCareDto {prefixes}><msg_id>1</msg_id><hkid>A1</hkid>"
        + '<x xmlns:q="v"/>' * 6990
        + "</QCareDto>"
    ).encode()
    result = timed(body)
    assert result.ok
    peak = tracemalloc.get_traced_memory()[1]
    assert peak < 200 * MIB, f"{peak / MIB:.0f} MiB"


def test_xsi_type_prefixes_are_looked_up_through_the_ancestors() -> None:
    def error(line: str) -> str | None:
        services = f'<services xmlns:r="urn:r">{line}</services>'
        body = f'<QCareDto {XSI} xmlns:q="urn:q">{services}</QCareDto>'
        result = bind(Format.XML, None, body.encode())
        return None if result.ok else result.errors[""][0]

    other = "<ServicesInfo> has an xsi:type that is not ServicesInfo"
    undeclared = "<ServicesInfo> has an xsi:type with an undeclared prefix"
    assert error('<ServicesInfo xsi:type="ServicesInfo"/>') is None
    assert error('<ServicesInfo xmlns:s="urn:s" xsi:type="ServicesInfo"/>') is None
    assert error('<ServicesInfo xmlns="" xsi:type="ServicesInfo"/>') is None
    assert error('<ServicesInfo xsi:type="q:ServicesInfo"/>') == other
    assert error('<ServicesInfo xmlns:s="urn:s" xsi:type="r:ServicesInfo"/>') == other
    assert error('<ServicesInfo xmlns:q="urn:s" xsi:type="q:ServicesInfo"/>') == other
    assert error('<ServicesInfo xsi:type="s:ServicesInfo"/>') == undeclared
    sibling = '<x xmlns:s="urn:s"/><ServicesInfo xsi:type="s:ServicesInfo"/>'
    assert error(sibling) == undeclared  # a sibling's declarations are not in scope


# --- long tags and attribute values are read at C speed (old: 4 MiB, 0.6 to 1.8 s) ---


@pytest.mark.parametrize(
    "body",
    [
        b'<QCareDto a="' + b"x" * (4 * MIB) + b'"><msg_id>1</msg_id></QCareDto>',
        b"<QCareDto><msg_id>1</msg_id></QCareDto" + b" " * (4 * MIB) + b">",
        b"<QCareDto" + b" " * (4 * MIB) + b"><msg_id>1</msg_id></QCareDto>",
    ],
)
def test_long_tags(body: bytes) -> None:
    result = timed(body, 1.0)
    assert result.model is not None
    assert result.model.msg_id == "1"


def test_tag_end() -> None:
    start = time.perf_counter()
    data = b"<a" + b" " * (32 * MIB) + b">"
    assert _tag_end(data, 0) == len(data) - 1  # old: a step per byte, 5 s and more
    assert time.perf_counter() - start < 1.0
    assert _tag_end(b"<a b='>\"' c=\">'\">x", 0) == 16
    assert _tag_end(b"<a/>", 0) == 3
    assert _tag_end(b"</a >", 0) == 4
