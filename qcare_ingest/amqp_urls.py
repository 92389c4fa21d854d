"""QCARE_AMQP_URL as a list of the nodes of one RabbitMQ cluster (issue 17).

The value is one URL, or several separated by commas. After the first (a full URL),
an item is either a full URL of its own or `host[:port]` (`[v6]:port` too), which shares
the first URL's scheme, credentials, vhost and query and defaults to the scheme's port:

    amqp://qcare:s3cret@rmq1:5672/qcare,rmq2:5672,rmq3
    amqps://qcare:s3cret@rmq1/qcare?heartbeat=30,amqps://other:pw@rmq2/qcare

A single URL whose password holds a raw comma still reads as one URL (what follows the
comma is not a URL nor a host); in a list, write such a comma as %2C.
"""

from __future__ import annotations

import re

from yarl import URL

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?$")


def _is_item(text: str) -> bool:
    return bool(_SCHEME.match(text) or _HOST_PORT.match(text))


def addresses(value: str) -> list[str]:
    """The URLs the value names, in the order given; ValueError if it names none."""
    value = value.strip()
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 1 or not all(_is_item(p) for p in parts[1:]):
        parts = [value]  # one URL (a comma inside its password)
    if not parts[0] or not _SCHEME.match(parts[0]):
        raise ValueError("QCARE_AMQP_URL must start with a full URL (amqp://... or amqps://...)")
    first = URL(parts[0])
    out = [str(first)]
    for item in parts[1:]:
        if _SCHEME.match(item):
            out.append(str(URL(item)))
            continue
        match = _HOST_PORT.match(item)
        assert match is not None
        host = match["host"].strip("[]")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"QCARE_AMQP_URL: bad port in {item!r}")
        out.append(str(first.with_host(host).with_port(port)))
    schemes = {URL(u).scheme for u in out}
    if not schemes <= {"amqp", "amqps"}:
        raise ValueError("QCARE_AMQP_URL: every address must be amqp:// or amqps://")
    if len(schemes) > 1:
        # a failover to a plain node would send the credentials in clear text
        raise ValueError("QCARE_AMQP_URL: mixes amqp:// and amqps:// (use one for every node)")
    return out


def where(url: str) -> str:
    """host:port of one address, for logs and errors (never the credentials)."""
    parsed = URL(url)
    host = parsed.host or "?"
    if ":" in host:
        host = f"[{host}]"
    port = parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    return f"{host}:{port}"
