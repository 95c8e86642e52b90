"""Stepped work: a generator that pauses (yields None) between parts and returns
its result. A caller on an event loop lets other work run at each pause
(controller/worker.py); offline callers run it to the end here."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Steps = Generator[None, None, T]


def run_to_end(steps: Steps[T]) -> T:
    """Take every step of `steps` at once; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
