"""`Programmed` conditions: what the provider's ApplyResult makes of the graph's decisions.

Translation decides everything but `Programmed`, which waits for the provider.
A listener keeps the reason translation gave it when it cannot be programmed
at all (a conflict, no usable certificate); otherwise the provider's outcome
speaks: a problem it reported for that listener (keyed by the listener's model
name), or the Gateway's result.
"""

from __future__ import annotations

from agc_controller.core import conditions as c
from agc_controller.core.status import ApplyResult, Condition
from agc_controller.translate.graph.gateway import Listener


def listener_programmed(
    listener: Listener, result: ApplyResult | None, generation: int
) -> Condition:
    """The listener's Programmed condition, `result` being its Gateway's (None: the
    Gateway is not accepted, so nothing was applied)."""
    if listener.not_programmable is not None:
        return c.false(c.PROGRAMMED, *listener.not_programmable, generation)
    if result is None:
        return c.false(c.PROGRAMMED, c.R_INVALID, "The Gateway is not accepted", generation)
    if listener.name in result.listener_problems:
        return c.false(
            c.PROGRAMMED, c.R_INVALID, result.listener_problems[listener.name], generation
        )
    if result.programmed:
        return c.true(c.PROGRAMMED, c.R_PROGRAMMED, "The listener is programmed", generation)
    return c.false(c.PROGRAMMED, result.reason, result.message, generation)


def with_programmed(
    conditions: tuple[Condition, ...], programmed: Condition
) -> tuple[Condition, ...]:
    """Accepted first, then Programmed, then the rest (a stable, readable order)."""
    return (conditions[0], programmed, *conditions[1:])
