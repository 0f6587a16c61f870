"""Delivery: one dispatcher per sink reads the spool from its own offset, encodes, sends, and only
then moves the offset; the spool gate pauses collection when the spool is full."""

from collector.delivery.backpressure import SpoolGate
from collector.delivery.dispatcher import Dispatcher, SpoolSignal

__all__ = ["Dispatcher", "SpoolGate", "SpoolSignal"]
