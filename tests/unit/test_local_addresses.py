"""The local provider's loopback addresses: pool allocation and requested addresses, and a
Gateway waiting for an address another one holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.addresses import AddressProblem, LoopbackAllocator
from agc_controller.translate.model import LoadBalancer, RequestedAddress

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


def test_a_gateway_refused_an_address_held_by_another_is_retried_once_it_is_let_go() -> None:
    allocator = LoopbackAllocator()
    allocator.address_for(A, (ip("127.78.0.1"),))
    with pytest.raises(AddressProblem):
        allocator.address_for(B, (ip("127.78.0.1"),))
    assert allocator.to_retry() == set()  # nothing let go yet
    allocator.address_for(A, ())  # A moves to the pool
    assert allocator.to_retry() == {B}
    assert allocator.to_retry() == set()  # named once
    assert allocator.address_for(B, (ip("127.78.0.1"),)) == "127.78.0.1"


def test_a_release_retries_the_waiting_and_other_refusals_do_not_wait() -> None:
    allocator = LoopbackAllocator()
    allocator.address_for(A, (ip("127.78.0.1"),))
    with pytest.raises(AddressProblem):
        allocator.address_for(B, (ip("127.78.0.1"),))
    with pytest.raises(AddressProblem):
        allocator.address_for(ObjectKey("Gateway", "ns", "c"), (ip("192.0.2.10"),))
    allocator.release(A)
    assert allocator.to_retry() == {B}


async def test_the_local_provider_requeues_a_waiting_gateway_when_the_holder_goes(
    tmp_path: Path,
) -> None:
    requeued: list[ObjectKey] = []
    provider = LocalProvider(state_dir=tmp_path, requeue=requeued.append)
    provider.allocator.address_for(A, (ip("127.78.0.1"),))
    refused = await provider.apply(_model(B, "127.78.0.1"))
    assert (refused.programmed, refused.reason) == (False, "AddressNotUsable")
    assert requeued == []
    await provider.delete(A)
    assert requeued == [B]


def _model(gateway: ObjectKey, address: str) -> LoadBalancer:
    return LoadBalancer(
        gateway=gateway,
        gateway_class="agc",
        generation=1,
        addresses=(ip(address),),
        frontends=(),
        hosts=(),
    )
