"""Hypothesis strategies for request bodies the binder must survive."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

from hypothesis import strategies as st

from qcare_ingest.dto import DTO_FIELDS, SERVICE_FIELDS

NAMES = [
    *DTO_FIELDS,
    *DTO_FIELDS.values(),
    "ADDRESS",
    "Services",
    "$id",
    "$ref",
    "$values",
    "$type",
    "other",
]
SERVICE_NAMES = [*SERVICE_FIELDS, *SERVICE_FIELDS.values(), "NOOFIMAGES", "$id", "$ref"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "1",
            " 5 ",
            "1.0",
            "2025-10-26T15:51:31.8166249+08:00",
            "/Date(1761465091816+0800)/",
            "2",
            "",
            "x",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
service_objects = st.dictionaries(st.sampled_from(SERVICE_NAMES), json_values, max_size=5)
dto_objects = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(json_values, st.lists(st.one_of(st.none(), service_objects), max_size=3)),
    max_size=10,
)


def json_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        dto_objects.map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    )


def _xml(fields: dict[str, Any]) -> bytes:
    parts = ["<QCareDto>"]
    for name, value in fields.items():
        if isinstance(value, list):
            parts.append(f"<{name}>")
            for line in value:
                parts.append("<ServicesInfo>")
                parts.extend(f"<{k}>{escape(str(v))}</{k}>" for k, v in line.items())
                parts.append("</ServicesInfo>")
            parts.append(f"</{name}>")
        else:
            parts.append(f"<{name}>{escape(str(value))}</{name}>")
    parts.append("</QCareDto>")
    return "".join(parts).encode()


xml_tag = st.sampled_from([n for n in NAMES if not n.startswith("$")])
xml_service = st.dictionaries(
    st.sampled_from([n for n in SERVICE_NAMES if not n.startswith("$")]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
    max_size=4,
)


def xml_bodies() -> st.SearchStrategy[bytes]:
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=15)
    return st.one_of(
        st.dictionaries(
            xml_tag, st.one_of(text, st.lists(xml_service, max_size=3)), max_size=8
        ).map(_xml),
        st.binary(max_size=200),
    )


def form_bodies() -> st.SearchStrategy[bytes]:
    key = st.one_of(
        st.sampled_from(list(DTO_FIELDS)),
        st.builds("services[{}].{}".format, st.integers(0, 3), st.sampled_from(SERVICE_NAMES)),
        st.builds("services[{}][{}]".format, st.integers(0, 3), st.sampled_from(SERVICE_NAMES)),
        st.text(max_size=10),
    )
    pair = st.tuples(key, st.text(max_size=12)).map(
        lambda kv: f"{quote_plus(kv[0])}={quote_plus(kv[1])}"
    )
    return st.one_of(
        st.lists(pair, max_size=12).map(lambda ps: "&".join(ps).encode()), st.binary(max_size=200)
    )


CONTENT_TYPES = [
    "application/json",
    "text/json",
    "text/html; charset=utf-8",
    "*/*",
    "text/*",
    "application/json; charset=utf-16",
    "application/json; charset=big5",
    "application/xml",
    "text/xml; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "",
    ";;;",
    "APPLICATION/JSON;CHARSET=UTF-8",
]
# printable ASCII: what can travel in an HTTP header at all
content_types = st.one_of(
    st.sampled_from(CONTENT_TYPES),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)
bodies = st.one_of(json_bodies(), xml_bodies(), form_bodies())
