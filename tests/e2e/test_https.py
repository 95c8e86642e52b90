"""HTTPS listeners: SNI certificates, misdirected requests, HTTP/2, rotation, client mTLS."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import attrs
import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster


@attrs.frozen
class Reply:
    exit_code: int
    status: int
    http_version: str
    subject: str


async def curl(
    address: str, host: str, ca: Path, *extra: str, sni: str | None = None, path: str = "/"
) -> Reply:
    """HTTPS through the gateway at `address`, with SNI `sni` (default: `host`)."""
    sni = sni or host
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sv",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        "--max-time",
        "10",
        "--cacert",
        str(ca),
        "--resolve",
        f"{sni}:443:{address}",
        "-H",
        f"Host: {host}",
        *extra,
        f"https://{sni}{path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    status, _, version = out.decode().partition(" ")
    subject = re.search(r"subject: (.*)", err.decode())
    return Reply(
        process.returncode or 0, int(status or 0), version, subject.group(1) if subject else ""
    )


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> dict[str, str]:
    return {name: backends.start_echo(f"tls-{name}") for name in ("a", "b")}


async def until(check, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.1)


async def test_sni_certificates_isolation_http2_and_rotation(
    cluster: Cluster, echo: dict[str, str], tmp_path: Path
) -> None:
    ca = CertificateAuthority()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    await cluster.apply(ca.issue("a.example.com").secret("cert-a"))
    await cluster.apply(ca.issue("b.example.com").secret("cert-b"))
    for name, address in echo.items():
        await cluster.service(name, [address])
    listeners = [
        {
            "name": name,
            "port": 443,
            "protocol": "HTTPS",
            "hostname": f"{name}.example.com",
            "tls": {"certificateRefs": [{"name": f"cert-{name}"}]},
        }
        for name in ("a", "b")
    ]
    address = await cluster.gateway("gw", listeners)
    for name in ("a", "b"):
        await cluster.route(
            name,
            {
                "parentRefs": [{"name": "gw", "sectionName": name}],
                "rules": [{"backendRefs": [{"name": name, "port": 80}]}],
            },
        )

    async def both_served() -> bool:
        replies = [await curl(address, f"{n}.example.com", ca_file) for n in ("a", "b")]
        return all(r.status == 200 for r in replies)

    await until(both_served)
    a = await curl(address, "a.example.com", ca_file)
    assert (a.exit_code, a.subject) == (0, "CN=a.example.com")
    assert a.http_version == "2"  # ALPN h2 by default
    b = await curl(address, "b.example.com", ca_file, "--http1.1")
    assert (b.subject, b.http_version) == ("CN=b.example.com", "1.1")
    misdirected = await curl(address, "b.example.com", ca_file, sni="a.example.com")
    assert misdirected.status == 421

    reloads = cluster.provider.reloads
    await cluster.apply(ca.issue("a.example.com", "rotated.example.com").secret("cert-a"))

    async def rotated() -> bool:
        process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            f"echo | openssl s_client -connect {address}:443 -servername a.example.com "
            "2>/dev/null | openssl x509 -noout -ext subjectAltName",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return b"rotated.example.com" in out

    await until(rotated)
    assert cluster.provider.reloads == reloads


async def test_frontend_client_certificate_validation(
    cluster: Cluster, echo: dict[str, str], tmp_path: Path
) -> None:
    server_ca, client_ca, other_ca = (
        CertificateAuthority("server"),
        CertificateAuthority("clients"),
        CertificateAuthority("strangers"),
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(server_ca.pem)
    good, bad = client_ca.issue("alice", client=True), other_ca.issue("mallory", client=True)
    for name, pair in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.crt").write_text(pair.cert_pem)
        (tmp_path / f"{name}.key").write_text(pair.key_pem)
    await cluster.apply(server_ca.issue("secure.example.com").secret("server"))
    await cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "client-ca"},
            "data": {"ca.crt": client_ca.pem},
        }
    )
    await cluster.service("a", [echo["a"]])
    listeners = [
        {
            "name": "https",
            "port": 443,
            "protocol": "HTTPS",
            "hostname": "secure.example.com",
            "tls": {"certificateRefs": [{"name": "server"}]},
        }
    ]

    def validation(mode: str) -> dict[str, object]:
        ref = {"group": "", "kind": "ConfigMap", "name": "client-ca"}
        return {"frontend": {"default": {"validation": {"caCertificateRefs": [ref], "mode": mode}}}}

    address = await cluster.gateway("gw", listeners, tls=validation("AllowValidOnly"))
    await cluster.route(
        "r",
        {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]},
    )
    cert = ("--cert", str(tmp_path / "good.crt"), "--key", str(tmp_path / "good.key"))
    stranger = ("--cert", str(tmp_path / "bad.crt"), "--key", str(tmp_path / "bad.key"))

    async def served() -> bool:
        return (await curl(address, "secure.example.com", ca_file, *cert)).status == 200

    await until(served)
    # without a valid certificate the connection is refused: closed, no response
    for extra in ((), stranger):
        refused = await curl(address, "secure.example.com", ca_file, *extra)
        assert (refused.status, refused.exit_code != 0) == (0, True), extra

    # AllowInsecureFallback: every client gets through
    await cluster.gateway("gw", listeners, tls=validation("AllowInsecureFallback"))
    for extra in ((), stranger, cert):
        assert (await curl(address, "secure.example.com", ca_file, *extra)).status == 200, extra
