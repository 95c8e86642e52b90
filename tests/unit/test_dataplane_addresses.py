"""spec.addresses in deployment mode (dataplane/addresses.py): only addresses inside
the allowed ranges, each for one Gateway, and every problem said."""

from __future__ import annotations

import ipaddress

from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.addresses import (
    address_problems,
    held_elsewhere,
    requested_addresses,
)
from agc_controller.translate.model import RequestedAddress

GW = ObjectKey("Gateway", "apps", "gw")
OTHER = ObjectKey("Gateway", "team", "other")
RANGES = (ipaddress.ip_network("203.0.113.0/28"), ipaddress.ip_network("2001:db8::/64"))


def test_requested_addresses_are_the_values_each_once_in_order() -> None:
    requested = (
        RequestedAddress("IPAddress", "203.0.113.2"),
        RequestedAddress("IPAddress", ""),
        RequestedAddress("IPAddress", "203.0.113.1"),
        RequestedAddress("IPAddress", "203.0.113.2"),
    )
    assert requested_addresses(requested) == ("203.0.113.2", "203.0.113.1")


def test_addresses_in_range_and_free_or_already_ours_are_usable() -> None:
    holders = {"203.0.113.1": GW, "203.0.113.9": OTHER}
    wanted = ["203.0.113.1", "203.0.113.2", "2001:db8::5"]
    assert address_problems(GW, wanted, ranges=RANGES, holders=holders) == []


def test_each_unusable_address_is_named_with_its_reason() -> None:
    holders = {"203.0.113.9": OTHER, "2001:db8::5": OTHER}
    problems = address_problems(
        GW,
        ["192.0.2.10", "203.0.113.9", "gw.example.com", "2001:db8:0::5"],
        ranges=RANGES,
        holders=holders,
    )
    assert problems == [
        "192.0.2.10 is outside the ranges this controller assigns (203.0.113.0/28, 2001:db8::/64)",
        "203.0.113.9 is in use by Gateway team/other",
        "'gw.example.com' is not an IP address",
        # holders are keyed by the address's canonical form
        "2001:db8:0::5 is in use by Gateway team/other",
    ]


def test_without_ranges_every_address_is_refused_saying_how_to_allow_one() -> None:
    (problem,) = address_problems(GW, ["203.0.113.1"], ranges=(), holders={})
    assert problem.startswith("203.0.113.1 cannot be assigned: this controller assigns no")
    assert "--dataplane-static-addresses" in problem


def test_an_address_another_gateway_holds_is_waited_for_and_no_other_problem_is() -> None:
    holders = {"203.0.113.9": OTHER, "203.0.113.1": GW}
    assert held_elsewhere(GW, ["203.0.113.1", "203.0.113.9"], holders)
    # ours, free, outside the ranges or not an address: nothing to wait for
    assert not held_elsewhere(GW, ["203.0.113.1", "203.0.113.2", "192.0.2.1", "x"], holders)
