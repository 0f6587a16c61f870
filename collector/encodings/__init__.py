"""Encodings a sink may choose with ``format``: spooled ECS JSON in, one line of bytes out
(json, raw, cef, leef)."""

from collector.encodings.formats import ENCODERS, Encoder

__all__ = ["ENCODERS", "Encoder"]
