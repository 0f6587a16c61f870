"""One way to build a client TLS context, for the API client and every sink that speaks TLS."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(
    *,
    verify: bool,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; no verification only when asked; a client certificate if given.

    The certificate is presented even with verification off: a receiver may still demand one.
    Raises OSError or ssl.SSLError for files that cannot be read or do not match.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return context
