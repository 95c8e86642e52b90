"""The local provider's loopback addresses: pool allocation and requested addresses."""

from __future__ import annotations

import pytest

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.local.addresses import AddressProblem, LoopbackAllocator
from agc_controller.translate.model import RequestedAddress

A = ObjectKey("Gateway", "ns", "a")
B = ObjectKey("Gateway", "ns", "b")


def ip(value: str = "") -> RequestedAddress:
    return RequestedAddress(type="IPAddress", value=value)


def test_pool_addresses_are_stable_and_distinct() -> None:
    allocator = LoopbackAllocator()
    a, b = allocator.address_for(A, ()), allocator.address_for(B, ())
    assert a != b
    assert a.startswith("127.77.")
    assert allocator.address_for(A, ()) == a
    assert allocator.address_for(A, (ip(),)) == a  # an empty value asks the pool


def test_a_requested_loopback_address_is_held_for_its_gateway() -> None:
    allocator = LoopbackAllocator()
    assert allocator.address_for(A, (ip("127.78.0.1"),)) == "127.78.0.1"
    with pytest.raises(AddressProblem, match="in use by Gateway ns/a") as taken:
        allocator.address_for(B, (ip("127.78.0.1"),))
    assert taken.value.reason == "AddressNotUsable"
    allocator.release(A)
    assert allocator.address_for(B, (ip("127.78.0.1"),)) == "127.78.0.1"


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        (("192.0.2.10",), "not a loopback address"),
        (("192.0.2.10", "127.78.0.1"), "192.0.2.10 is not a loopback address"),
        (("nonsense",), "is not an IP address"),
        (("127.78.0.1", "127.78.0.2"), "one address per Gateway; 2 were requested"),
    ],
)
def test_every_requested_address_must_be_served(requested: tuple[str, ...], message: str) -> None:
    with pytest.raises(AddressProblem, match=message) as problem:
        LoopbackAllocator().address_for(A, tuple(ip(v) for v in requested))
    assert problem.value.reason == "AddressNotUsable"
