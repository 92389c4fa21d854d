"""TLS contexts from the settings: the gateway's listener and the AMQP client (issue 14).

Both are Python's secure defaults with the floor pinned: TLS 1.2 at least, certificate and
host name verified on the client side. PostgreSQL needs nothing here: asyncpg reads
`sslmode=verify-full&sslrootcert=...` from QCARE_DATABASE_URL itself.
"""

from __future__ import annotations

import ssl

from yarl import URL

MINIMUM = ssl.TLSVersion.TLSv1_2


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The gateway's HTTPS context: the certificate chain and key, TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def amqp_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    """For an `amqps://` URL: a client context that verifies the broker's certificate and
    host name against `ca_file` (the system's CAs without it). None for `amqp://`."""
    parsed = URL(url)
    if parsed.scheme != "amqps":
        return None
    # aiormq's own `?cafile=` in the URL still works when the setting is not given
    cafile = ca_file or parsed.query.get("cafile")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = MINIMUM
    return context
