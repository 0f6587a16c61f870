"""A Mimecast API simulator on loopback: the fake the tests, the benchmarks and ``demo`` run against."""

from collector.simulator.data import SimRecord, generate
from collector.simulator.server import FAULT_KINDS, FakeMimecast, SimSettings, SimStats

__all__ = ["FAULT_KINDS", "FakeMimecast", "SimRecord", "SimSettings", "SimStats", "generate"]
