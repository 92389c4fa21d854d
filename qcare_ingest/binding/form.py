"""Form posts as the old server bound them (Web API 5.2.7's JQueryMvcFormUrlEncodedFormatter).

What the reference server showed (tests/unit/test_binding_form.py):

* the body is split on `&` and the first `=` (`;` is no separator), read as UTF-8 whatever the
  `charset` says, then `+` and `%XX` are decoded (UTF-8 again; a `%` without two hex digits
  stays as it is); invalid UTF-8 becomes U+FFFD as Mono's decoder counts it (`utf8`);
* keys are rewritten jQuery-style (`a[]` -> `a`, `a[b]` -> `a.b`, `a[0]` kept) and a key with
  a `[` and no `]` after it fails the whole body: a null model, an error on the parameter ('');
* a property binds from the key that is its name, ignoring ASCII case only, first value first
  (`name=a&name=b` is "a"); an empty or whitespace-only value is null, without an error;
* `studyDate` (DateTime?) is converted by DateTime.Parse(InvariantCulture): `netdate`. It is
  kept as sent when dates.parse_dotnet reads the same value from it, else stored as the ISO
  text of that value (a day alone as `yyyy-MM-dd`, so that studyTime still completes it);
* **`services` is a public field, and form binding binds properties only: a form post never
  bound a service line.** They are dropped as the old server dropped them, with a warning.

Deliberately not as the old server (hardening): at most MAX_KEYS keys (the old server had no
limit); studyDate as netdate accepts it (stricter on obscure shapes); limits.py as for JSON.
"""

from __future__ import annotations

import re
from typing import Any

from ..dates import parse_dotnet
from ..dto import DTO_FIELDS, QCareDto
from .echo import quote_date
from .netdate import parse_invariant
from .result import BindResult

# The old server had none (MediaTypeFormatter.MaxHttpCollectionKeys is Int32.MaxValue). Each
# key costs a little time, none is kept unless it names a property, so this bounds the time a
# 4 MiB body can take (a QCare form has about 20 keys, 420 with 100 service lines).
MAX_KEYS = 100_000

# Decoding costs a Python step per run of escapes (4 MiB of `%C3a` took 2.7 s): a key is
# decoded whole only when it could name a property (no property's key is longer, even
# spelled with every escape), and a value only as far as any limit can let it through
# (48 KiB of escapes still decode to more than the longest field's 1,000 characters).
MAX_RAW_KEY = 1024
MAX_RAW_VALUE = 48 * 1024
READ_BUFFER = 32 * 1024  # FormUrlEncodedMediaTypeFormatter.ReadBufferSize's default

# Char.IsWhiteSpace: what String.IsNullOrWhiteSpace treats as blank
_NET_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_PROPERTIES = {name.lower(): name for name in DTO_FIELDS if name != "services"}  # C# names
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2}){1,1024}")  # bounded: the regex stack stays small
# Where Mono's UTF-8 decoder writes one U+FFFD and Python's two: a lead byte that needs a
# narrower range for its first continuation byte (E0, ED, F0, F4), with a continuation byte
# outside that range. Such a pair never occurs in valid UTF-8.
_MONO_PAIRS = re.compile(rb"\xe0[\x80-\x9f]|\xed[\xa0-\xbf]|\xf0[\x80-\x8f]|\xf4[\x90-\xbf]")


def utf8(data: bytes | bytearray) -> str:
    """UTF-8 with U+FFFD as Mono's decoder writes it (ED A0 80 -> 2, not 3, U+FFFD);
    otherwise as Python's: one per maximal invalid subpart. In C, however hostile the bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _MONO_PAIRS.sub(b"\xff", data).decode("utf-8", "replace")


def url_decode(text: str) -> str:
    """UriQueryUtility.UrlDecode: `+` is a space, runs of `%XX` are UTF-8 bytes."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    out: list[str] = []
    pending = bytearray()  # the bytes of one run of escapes, decoded together
    pos = 0
    for m in _ESCAPES.finditer(text):
        if m.start() > pos:
            out.append(utf8(pending))
            pending.clear()
            out.append(text[pos : m.start()])
        pending += bytes.fromhex(m[0].replace("%", ""))
        pos = m.end()
    out.append(utf8(pending))
    out.append(text[pos:])
    return "".join(out)


def jquery_fails(key: str) -> bool:
    """Whether FormDataCollectionExtensions.NormalizeJQueryToMvc throws for the key: it pairs
    each `[` with the next `]`, so it throws exactly when a `[` has no `]` after it."""
    return "[" in key and key.rfind("[") > key.rfind("]")


def property_of(key: str) -> str | None:
    """The C# property a decoded key names after NormalizeJQueryToMvc, if any. Normalising
    turns `[]` into nothing, `[x]` into `.x` and keeps `[0]`; a property's name has neither
    `.` nor brackets, so only a name with `[]` pairs in it can still name one. Only ASCII case
    is ignored (Mono's OrdinalIgnoreCase does not take U+0131 for 'i'). Linear, in C."""
    if "[" in key:
        key = key.replace("[]", "")
    if len(key) > 20 or not key.isascii():
        return None
    return _PROPERTIES.get(key.lower())


_BRACKET = re.compile(r"\[|\]|%5[BbDd]")


def _brackets_of(raw_key: str) -> str:
    """A long key's decoded head and its brackets in order: enough to tell whether it fails
    the jQuery rewrite or is a services key; it names no property."""
    head = url_decode(raw_key[:256])
    marks = "".join("]" if m[0] in ("]", "%5D", "%5d") else "[" for m in _BRACKET.finditer(raw_key))
    return head + "\x00" + marks


def _decoded_key(raw_key: str) -> str:
    if len(raw_key) > MAX_RAW_KEY:
        return _brackets_of(raw_key)  # '[' and ']' are only ever themselves or %5B / %5D
    return url_decode(raw_key)


def _is_services(key: str) -> bool:
    head = key[:64].replace("[]", "").lower()
    return head[:8] == "services" and head[8:9] in ("", ".", "[")


def _same_date(sent: str, parsed: str) -> bool:
    """Whether dates.parse_dotnet reads the text as sent as the value .NET parsed: then it is
    kept as sent, as JSON keeps it (its 7 fraction digits, its offset, a date alone)."""
    theirs, ours = parse_dotnet(sent), parse_dotnet(parsed)
    return (
        theirs is not None
        and ours is not None
        and (theirs.value.tzinfo is None) == (ours.value.tzinfo is None)
        and theirs.value == ours.value
        and theirs.extra_ticks == ours.extra_ticks
        and theirs.date_only == ours.date_only
    )


def _read(body: bytes) -> str:
    """The body as the old server's FormUrlEncodedParser read it: UTF-8 whatever the charset
    parameter says, decoded one 32 KiB read buffer at a time, so that a character cut by a
    buffer's end is lost (U+FFFD) as it was there."""
    if len(body) <= READ_BUFFER:
        return utf8(body)
    return "".join(utf8(body[at : at + READ_BUFFER]) for at in range(0, len(body), READ_BUFFER))


def bind_form(body: bytes) -> BindResult:
    result = BindResult(None)
    text = _read(body)
    raw_values: dict[str, str] = {}  # C# property -> its first value, still encoded
    services = keys = 0
    pos, end = 0, len(text)
    while pos <= end:
        amp = text.find("&", pos)
        if amp < 0:
            amp = end
        keys += 1
        if keys > MAX_KEYS:
            result.add("", f"A form post holds at most {MAX_KEYS} keys.")
            return result
        eq = text.find("=", pos, amp)
        raw_key = text[pos:amp] if eq < 0 else text[pos:eq]
        key = _decoded_key(raw_key)
        if jquery_fails(key):
            result.add("", "A form key has a '[' without its ']'.")
            return result  # the whole body fails, as the old server's formatter did
        name = property_of(key)
        if name is not None:
            if name not in raw_values:
                raw_values[name] = "" if eq < 0 else text[eq + 1 : amp]
        elif _is_services(key):
            services += 1
        pos = amp + 1
    fields: dict[str, Any] = {}
    for name, raw in raw_values.items():
        value = url_decode(raw[:MAX_RAW_VALUE])
        if not value.strip(_NET_SPACE):
            continue  # ConvertEmptyStringToNull: null, no error
        if name == "studyDate":
            parsed = parse_invariant(value, date_only=True)
            if parsed is None:
                result.add(name, f"The value {quote_date(value, 'sent')} is not valid for {name}.")
                continue
            if not _same_date(value, parsed):
                value = parsed  # the value it names, in a shape dates.parse_dotnet reads
        fields[DTO_FIELDS[name]] = value
    if services:
        result.warnings.append(
            f"form posts never bound services: {services} services keys ignored,"
            " as the old server did"
        )
    result.model = QCareDto(**fields)
    return result
