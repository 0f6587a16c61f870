"""Talking to Mimecast: sign each request (HMAC or OAuth2), pace it from the rate-limit headers,
classify every answer by one table, and retry what can be retried."""

from collector.api.auth import Authenticator, make_authenticator
from collector.api.client import MimecastClient, Page, tls_setting
from collector.api.errors import Action, ApiError
from collector.api.pacer import PacerRegistry

__all__ = [
    "Action",
    "ApiError",
    "Authenticator",
    "MimecastClient",
    "PacerRegistry",
    "Page",
    "make_authenticator",
    "tls_setting",
]
