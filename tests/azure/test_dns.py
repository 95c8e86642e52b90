"""Azure DNS records of a Gateway, through the real SDK against the ARM test server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from agc_controller.core import conditions as c
from agc_controller.core.status import ApplyResult, GatewayAddress, ProviderCondition
from agc_controller.providers.azure import AzureProvider
from agc_controller.providers.azure.arm import DNS_API_VERSION
from agc_controller.providers.azure.dns import address_records, record_set_body, relative_name
from agc_controller.providers.azure.settings import (
    DNS_ZONE_ANNOTATION,
    FRONTEND_ANNOTATION,
    DnsZone,
    dns_zone,
)
from agc_controller.translate.model import LoadBalancer
from tests.azure.conftest import SUBSCRIPTION, CallCounter, StaticToken, settings_for
from tests.azure.models import model
from tests.azure.server import ArmServer, Failure

ZONE_GROUP = "rg-dns"
ZONE = "example.com"
ZONE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{ZONE_GROUP}"
    f"/providers/Microsoft.Network/dnszones/{ZONE}"
)
OWNER = "heritage=agc-controller,agc-controller/owner=default/gw"
GOLDEN = Path(__file__).parent / "golden" / "dns-records.out.yaml"


def dns_model(*hostnames: str, name: str = "gw", zone_id: str = ZONE_ID) -> LoadBalancer:
    base = model(name, annotations=((DNS_ZONE_ANNOTATION, zone_id),))
    template = base.hosts[0]
    return attrs.evolve(base, hosts=tuple(attrs.evolve(template, hostname=h) for h in hostnames))


def dns_condition(result: ApplyResult) -> ProviderCondition:
    (found,) = [pc for pc in result.conditions if pc.type == c.DNS_RECORDS]
    return found


def records(arm: ArmServer) -> dict[str, list[Any]]:
    """`<TYPE> <name>` -> the record set's records, of the test zone."""
    out = {}
    for key, record_set in arm.record_sets(SUBSCRIPTION, ZONE_GROUP, ZONE).items():
        props = record_set["properties"]
        field = {"A": "ARecords", "AAAA": "AAAARecords", "TXT": "TXTRecords"}.get(
            key.split()[0], "CNAMERecord"
        )
        out[key] = props[field]
    return out


def dns_requests(arm: ArmServer) -> list[Any]:
    return [r for r in arm.requests if "/dnsZones/" in r.path or "/dnszones/" in r.path]


@pytest.fixture
async def zone(arm: ArmServer) -> ArmServer:
    arm.seed_dns_zone(SUBSCRIPTION, ZONE_GROUP, ZONE)
    return arm


async def test_records_are_kept_for_the_host_names_in_the_zone(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter], request: Any
) -> None:
    p, _ = provider
    result = await p.apply(
        dns_model("www.example.com", "*.api.example.com", "example.com", "www.other.org")
    )
    assert result.programmed, result.message
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (True, c.R_PROGRAMMED), dns.message
    assert "3 of 3 host names in DNS zone example.com have their records" in dns.message
    assert "skipped outside the zone: www.other.org" in dns.message
    address = [{"ipv4Address": "203.0.113.10"}]
    owner = [{"value": [OWNER]}]
    assert records(zone) == {
        "A www": address,
        "TXT www": owner,
        "A *.api": address,
        "TXT *.api": owner,
        "A @": address,
        "TXT @": owner,
    }
    calls = dns_requests(zone)
    assert {r.api_version for r in calls} == {DNS_API_VERSION}
    writes = [r for r in calls if r.method == "PUT"]
    # every record set was created only if none was there
    assert all(r.headers.get("If-None-Match") == "*" for r in writes)
    # the wire format of what was written (golden): rewrite with --update-azure-golden
    got = [
        {
            "put": r.path.split("/dnsZones/", 1)[1],
            "ifNoneMatch": r.headers.get("If-None-Match"),
            "body": r.body,
        }
        for r in writes
    ]
    if request.config.getoption("--update-azure-golden", default=False):
        GOLDEN.write_text(yaml.safe_dump(got, sort_keys=False, width=100))
    assert yaml.safe_load(GOLDEN.read_text()) == got
    # unchanged names and addresses: no DNS call at all
    before = len(dns_requests(zone))
    assert dns_condition(
        await p.apply(
            dns_model("www.example.com", "*.api.example.com", "example.com", "www.other.org")
        )
    ).status
    assert len(dns_requests(zone)) == before


async def test_records_it_does_not_own_are_reported_and_left_untouched(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    theirs = zone.put_record_set(
        SUBSCRIPTION,
        ZONE_GROUP,
        ZONE,
        record_type="A",
        name="www",
        properties={"TTL": 60, "ARecords": [{"ipv4Address": "198.51.100.7"}]},
    )
    other_gateway = zone.put_record_set(
        SUBSCRIPTION,
        ZONE_GROUP,
        ZONE,
        record_type="TXT",
        name="shop",
        properties={
            "TTL": 60,
            "TXTRecords": [{"value": ["heritage=agc-controller,agc-controller/owner=team/gw"]}],
        },
    )
    result = await p.apply(dns_model("www.example.com", "shop.example.com", "api.example.com"))
    assert result.programmed, result.message
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (False, c.R_CONFLICTED)
    assert "www.example.com (it holds A records without an owner TXT record)" in dns.message
    assert "shop.example.com (its TXT record set is owned by Gateway team/gw)" in dns.message
    assert "1 of 3 host names" in dns.message
    sets = zone.record_sets(SUBSCRIPTION, ZONE_GROUP, ZONE)
    assert sets["A www"] == theirs
    assert sets["TXT shop"] == other_gateway
    assert "TXT www" not in sets
    assert "A shop" not in sets
    assert "A api" in sets
    # a conflict is no ARM trouble: not retried by the queue for it
    assert not result.temporary


async def test_a_host_no_longer_served_loses_its_records(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    await p.apply(dns_model("www.example.com", "old.example.com"))
    assert "A old" in records(zone)
    result = await p.apply(dns_model("www.example.com"))
    dns = dns_condition(result)
    assert dns.status, dns.message
    assert "deleted the records of 1 name no longer served" in dns.message
    assert set(records(zone)) == {"A www", "TXT www"}
    deletes = [r for r in dns_requests(zone) if r.method == "DELETE"]
    # A first, then its owner TXT, each only as it was read
    assert [r.path.rsplit("/", 2)[1] for r in deletes] == ["A", "TXT"]
    assert all(r.headers.get("If-Match") for r in deletes)


async def test_deleting_the_gateway_deletes_all_of_its_records_and_only_them(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    await p.apply(dns_model("www.example.com", "*.example.com", name="gw"))
    await p.apply(dns_model("other.example.com", name="gw2"))
    await p.delete(dns_model(name="gw").gateway)
    assert set(records(zone)) == {"A other", "TXT other"}


async def test_removing_the_annotation_deletes_the_records(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    await p.apply(dns_model("www.example.com"))
    result = await p.apply(model("gw"))
    assert result.programmed
    assert not [pc for pc in result.conditions if pc.type == c.DNS_RECORDS]
    assert records(zone) == {}


async def test_a_gateway_moved_to_another_zone_leaves_the_old_one(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    zone.seed_dns_zone(SUBSCRIPTION, ZONE_GROUP, "example.net")
    await p.apply(dns_model("www.example.com", "www.example.net"))
    result = await p.apply(
        dns_model(
            "www.example.com", "www.example.net", zone_id=ZONE_ID.replace(ZONE, "example.net")
        )
    )
    assert dns_condition(result).status
    assert records(zone) == {}
    assert set(zone.record_sets(SUBSCRIPTION, ZONE_GROUP, "example.net")) == {"A www", "TXT www"}


async def test_a_zone_the_identity_may_not_write_is_pending_and_the_gateway_programmed(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    zone.inject(
        Failure(
            "GET",
            403,
            "AuthorizationFailed",
            "The client does not have authorization to perform action "
            "'Microsoft.Network/dnszones/TXT/read'.",
            path_contains="/dnsZones/",
        )
    )
    result = await p.apply(dns_model("www.example.com"))
    assert result.programmed, result.message
    assert len(zone.puts()) == 1
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (False, c.R_PENDING)
    assert "Microsoft.Network/dnszones/TXT/read" in dns.message
    # tried again by the work queue, like the Application Gateway's access errors
    assert result.temporary
    assert records(zone) == {}
    again = await p.apply(dns_model("www.example.com"))
    assert dns_condition(again).status
    assert "A www" in records(zone)


async def test_a_missing_zone_is_pending(
    arm: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    missing = ZONE_ID.replace(ZONE, "missing.example")
    result = await p.apply(dns_model("www.missing.example", zone_id=missing))
    assert result.programmed
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (False, c.R_PENDING)
    assert "missing.example" in dns.message
    assert "not found" in dns.message


async def test_an_invalid_annotation_is_reported_and_the_gateway_programmed(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    result = await p.apply(dns_model("www.example.com", zone_id="example.com"))
    assert result.programmed
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (False, c.R_INVALID)
    assert dns.message.startswith(f"metadata.annotations[{DNS_ZONE_ANNOTATION!r}]")
    assert "is not a DNS zone's resource ID" in dns.message
    bad_name = ZONE_ID.replace(ZONE, "com")
    dns = dns_condition(await p.apply(dns_model("www.example.com", zone_id=bad_name)))
    assert (dns.reason, "'com' is not a DNS zone name" in dns.message) == (c.R_INVALID, True)
    assert dns_requests(zone) == []


async def test_a_concurrent_writer_is_never_clobbered(zone: ArmServer) -> None:
    """Someone creates a TXT at the name between our read and our write: our creation
    (If-None-Match: *) gets 412, we read again, and find a record set that is not ours."""
    theirs = {"TTL": 60, "TXTRecords": [{"value": ["v=spf1 -all"]}]}

    def meanwhile(method: str, status: int) -> None:
        if (method, status) == ("GET", 404) and not zone.record_sets(
            SUBSCRIPTION, ZONE_GROUP, ZONE
        ):
            zone.put_record_set(
                SUBSCRIPTION, ZONE_GROUP, ZONE, record_type="TXT", name="www", properties=theirs
            )

    p = AzureProvider(settings=settings_for(zone), credential=StaticToken(), on_arm_call=meanwhile)
    async with p:
        result = await p.apply(dns_model("www.example.com"))
    dns = dns_condition(result)
    assert (dns.status, dns.reason) == (False, c.R_CONFLICTED), dns.message
    assert "a TXT record set that is not this controller's" in dns.message
    assert [r.status for r in dns_requests(zone) if r.method == "PUT"] == [412]
    assert records(zone) == {"TXT www": theirs["TXTRecords"]}


async def test_an_update_racing_another_writer_is_read_again(
    zone: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, counter = provider
    await p.apply(dns_model("www.example.com"))
    # the Gateway takes the private frontend too; ARM answers the first conditional
    # update with 412 (someone wrote the record set since it was read)
    both = dns_model("www.example.com")
    both = attrs.evolve(both, annotations=(*both.annotations, (FRONTEND_ANNOTATION, "both")))
    zone.inject(Failure("PUT", 412, "PreconditionFailed", "etag mismatch", path_contains="/A/"))
    result = await p.apply(both)
    dns = dns_condition(result)
    assert dns.status, dns.message
    assert counter.counts[("PUT", 412)] == 1
    assert records(zone)["A www"] == [{"ipv4Address": "10.1.0.10"}, {"ipv4Address": "203.0.113.10"}]
    updates = [r for r in dns_requests(zone) if r.method == "PUT" and r.path.endswith("/A/www")]
    # created once, then updated only as read (If-Match), the second time with a fresh read
    assert [r.status for r in updates] == [201, 412, 200]
    assert updates[1].headers.get("If-Match")
    assert updates[2].headers.get("If-Match")


def test_names_relative_to_the_zone() -> None:
    assert relative_name("Example.COM.", ZONE) == "@"
    assert relative_name("*.api.example.com", ZONE) == "*.api"
    assert relative_name("www.example.com", ZONE) == "www"
    assert relative_name("notexample.com", ZONE) is None
    assert relative_name("example.com.evil.org", ZONE) is None


def test_ipv6_addresses_are_aaaa_records_and_host_names_none() -> None:
    assert address_records(
        [
            GatewayAddress(type="IPAddress", value="2001:db8::1"),
            GatewayAddress(type="IPAddress", value="203.0.113.10"),
            GatewayAddress(type="Hostname", value="appgw.westeurope.cloudapp.azure.com"),
        ]
    ) == {"A": ("203.0.113.10",), "AAAA": ("2001:db8::1",)}
    assert record_set_body("AAAA", ["2001:db8::1"]) == {
        "properties": {"TTL": 300, "AAAARecords": [{"ipv6Address": "2001:db8::1"}]}
    }


def test_the_zone_annotation_is_parsed_strictly() -> None:
    assert dns_zone(dns_model("www.example.com")) == DnsZone(
        subscription_id=SUBSCRIPTION, resource_group=ZONE_GROUP, name=ZONE
    )
    # ARM's own spelling of the type, and a trailing slash or dot, are the same zone
    for spelling in (ZONE_ID.replace("dnszones", "dnsZones") + "/", ZONE_ID + "."):
        found = dns_zone(dns_model(zone_id=spelling))
        assert isinstance(found, DnsZone), found
        assert found.name == ZONE
    for bad in (
        ZONE_ID.replace("dnszones", "privateDnsZones"),
        ZONE_ID + "/A/www",
        ZONE_ID.replace(SUBSCRIPTION, "not-a-subscription"),
        ZONE_ID.replace(ZONE, "exa mple.com"),
    ):
        assert isinstance(dns_zone(dns_model(zone_id=bad)), str), bad
    assert dns_zone(model()) is None
