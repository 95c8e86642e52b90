"""The banner of `make run` (devcluster/examples.py): its curl lines, the checks
behind them, and what makes a Programmed condition this run's."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from devcluster import examples
from devcluster.echo import make_app

GATEWAY = {
    "metadata": {"generation": 2},
    "status": {
        "addresses": [{"value": "127.77.25.4"}],
        "conditions": [
            {
                "type": "Programmed",
                "status": "True",
                "reason": "Programmed",
                "message": "Programmed on the local data plane at 127.77.25.4.",
            }
        ],
        "listeners": [],
    },
}
H = "-H 'Host: app.example.com'"


def test_the_curl_lines_are_the_ones_the_banner_always_printed() -> None:
    checks = examples.curl_checks(GATEWAY, port_offset=0)
    assert [check.command for check in checks] == [
        f"curl -s {H} http://127.77.25.4:80/blue            # path routing -> blue",
        f"curl -s {H} http://127.77.25.4:80/green           # path routing -> green",
        f"curl -s {H} -H 'x-canary: true' http://127.77.25.4:80/  # header routing -> green",
        f"for i in $(seq 20); do curl -s {H} http://127.77.25.4:80/ "
        '| grep -o \'"name": "[a-z]*"\'; done  # 80/20 split',
        "for i in $(seq 5); do curl -s -o /dev/null -w '%{http_code} ' "
        f"{H} http://127.77.25.4:80/api; done; echo  # 2 a second, then 429",
        f"curl -s -o /dev/null -w '%{{http_code}} ' {H} "
        "'http://127.77.25.4:80/green?q=<script>alert(1)</script>'; echo  # WAF -> 403",
        "curl -sk --resolve app.example.com:443:127.77.25.4 "
        "https://app.example.com:443/blue  # HTTPS",
    ]
    banner = examples.describe(
        GATEWAY, checks, kubeconfig=Path("/k"), kubectl=Path("/t/bin/kubectl")
    )
    assert all(f"  {check.command}" in banner.splitlines() for check in checks)
    # the kubectl built with the control plane comes first on PATH
    assert "  export KUBECONFIG=/k PATH=/t/bin:$PATH" in banner.splitlines()


def test_each_check_sends_what_its_curl_line_sends() -> None:
    blue, green, canary, split, limited, firewall, https = examples.curl_checks(
        GATEWAY, port_offset=8000
    )
    assert (blue.url, blue.host, blue.backends) == (
        "http://127.77.25.4:8080/blue",
        "app.example.com",
        {"blue"},
    )
    assert (green.url, green.backends) == ("http://127.77.25.4:8080/green", {"green"})
    assert (canary.headers, canary.backends) == ((("x-canary", "true"),), {"green"})
    assert split.backends == {"blue", "green"}
    assert (limited.url, limited.backends) == ("http://127.77.25.4:8080/api", {"blue"})
    assert (firewall.url, firewall.status) == (
        "http://127.77.25.4:8080/green?q=<script>alert(1)</script>",
        403,
    )
    assert (https.url, https.host) == ("https://127.77.25.4:8443/blue", "app.example.com")


def test_the_ingress_lines_go_to_the_ingress_address() -> None:
    *_, https, shop, root = examples.curl_checks(GATEWAY, port_offset=8000, ingress="127.77.9.9")
    assert https.host == "app.example.com"
    assert shop.command == (
        "curl -s -H 'Host: shop.example.com' http://127.77.9.9:8080/blue  # Ingress -> blue"
    )
    assert (shop.url, shop.host, shop.backends) == (
        "http://127.77.9.9:8080/blue",
        "shop.example.com",
        {"blue"},
    )
    assert (root.url, root.status) == ("http://127.77.9.9:8080/", 302)


def _condition(status: str, generation: int, when: str) -> dict[str, object]:
    return {
        "type": "Programmed",
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": when,
    }


def test_only_a_programmed_condition_of_this_run_counts() -> None:
    since = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert examples._programmed_since(_condition("True", 2, "2026-01-02T03:04:05Z"), 2, since)
    # left by an earlier run, for an older generation, or not True
    assert not examples._programmed_since(_condition("True", 2, "2026-01-02T03:04:04Z"), 2, since)
    assert not examples._programmed_since(_condition("True", 1, "2026-01-02T03:04:06Z"), 2, since)
    assert not examples._programmed_since(_condition("False", 2, "2026-01-02T03:04:06Z"), 2, since)


@pytest.fixture
async def blue_backend() -> AsyncIterator[str]:
    runner = web.AppRunner(make_app("blue"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _check(url: str, *backends: str) -> examples.CurlCheck:
    return examples.CurlCheck("curl", url, "app.example.com", (), frozenset(backends))


async def test_a_check_answered_as_promised_passes(blue_backend: str) -> None:
    assert await examples.wait_serving([_check(f"{blue_backend}/blue", "blue")]) == []


async def test_a_check_answered_by_another_backend_fails_within_the_bound(
    blue_backend: str,
) -> None:
    failures = await examples.wait_serving([_check(f"{blue_backend}/", "green")], within=0.5)
    assert failures == [
        f"{blue_backend}/ (Host app.example.com) should be answered by green: answered by 'blue'"
    ]
    assert "WARNING: 1 of the requests" in examples.describe_failures(failures)
    assert examples.describe_failures([]) == ""


async def test_a_check_nobody_answers_fails_with_the_reason(unused_tcp_port: int) -> None:
    failures = await examples.wait_serving(
        [_check(f"http://127.0.0.1:{unused_tcp_port}/", "blue")], within=0.3
    )
    assert len(failures) == 1
    assert failures[0].startswith(f"http://127.0.0.1:{unused_tcp_port}/ (Host app.example.com)")


async def test_a_check_promising_a_refusal_wants_that_status(blue_backend: str) -> None:
    refused = examples.CurlCheck(
        "curl", f"{blue_backend}/blue", "app.example.com", (), frozenset(), status=403
    )
    failures = await examples.wait_serving([refused], within=0.3)
    assert failures == [f"{refused.promise()}: status 200"]
    assert refused.promise().endswith("should be answered 403")
