"""JWKS documents by URL: the fetcher (against a real HTTPS server) and what
translation makes of what it fetched, or of why it could not."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from agc_controller.controller.jwks import JwksFetcher
from agc_controller.render.documents import translate_all
from agc_controller.translate import Snapshot
from agc_controller.translate.snapshot import RemoteDocument
from tests.azure.tls import server_context
from tests.unit.test_policy_hostile_input import SETTINGS, _objects

URL_PATH = "/.well-known/jwks.json"


def _jwks() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    n = key.public_numbers().n.to_bytes(256, "big")
    return json.dumps(
        {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "n": base64.urlsafe_b64encode(n).rstrip(b"=").decode(),
                    "e": "AQAB",
                }
            ]
        }
    )


class Issuer:
    """An HTTPS server answering its JWKS (or a status)."""

    def __init__(self) -> None:
        self.document = _jwks()
        self.status = 200
        self.gets = 0

    async def handle(self, _: web.Request) -> web.Response:
        self.gets += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.Response(text=self.document, content_type="application/json")


@pytest.fixture
async def issuer(tmp_path: Path) -> Any:
    app = web.Application()
    state = Issuer()
    app.router.add_get(URL_PATH, state.handle)
    context, ca_file = server_context(tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield state, f"https://127.0.0.1:{port}{URL_PATH}", str(ca_file)
    await runner.cleanup()


async def test_fetches_keeps_the_last_good_document_and_says_when_it_changes(
    issuer: Any,
) -> None:
    state, url, ca_file = issuer
    documents: dict[str, RemoteDocument] = {}
    changed: list[str] = []
    wanted = {url}
    fetcher = JwksFetcher(
        documents, wanted=lambda: wanted, on_change=changed.append, refresh_s=0, ca_file=ca_file
    )
    async with aiohttp.ClientSession() as session:
        await fetcher.pass_once(session)
        assert documents[url].text == state.document
        assert changed == [url]
        # the same document again: no change
        await fetcher.pass_once(session)
        assert (changed, state.gets) == ([url], 2)
        # rotated keys
        state.document = _jwks()
        await fetcher.pass_once(session)
        assert (documents[url].text, changed) == (state.document, [url, url])
        # a failing server: the last good keys stay
        state.status = 503
        await fetcher.pass_once(session)
        assert documents[url].text == state.document
        assert len(changed) == 2
        # nobody names it any more: forgotten
        wanted.clear()
        await fetcher.pass_once(session)
        assert documents == {}


async def test_a_server_it_cannot_trust_or_reach_is_a_problem(issuer: Any) -> None:
    _, url, _ = issuer
    documents: dict[str, RemoteDocument] = {}
    fetcher = JwksFetcher(documents, wanted=lambda: {url}, on_change=lambda _: None)
    async with aiohttp.ClientSession() as session:
        await fetcher.pass_once(session)  # the system's CAs do not know the issuer's
    problem = documents[url].problem
    assert problem is not None
    assert problem.startswith(f"GET {url}: ")
    assert "certificate" in problem.lower()


def _translate(remote: dict[str, RemoteDocument], url: str) -> Any:
    gw = "gateway.networking.k8s.io"
    objects: list[dict[str, Any]] = [
        *_objects(),
        {
            "apiVersion": "agc-controller.io/v1alpha1",
            "kind": "AuthPolicy",
            "metadata": {"name": "jwt", "namespace": "default", "generation": 1},
            "spec": {
                "targetRefs": [{"group": gw, "kind": "Gateway", "name": "gw"}],
                "jwt": {"providers": [{"issuer": "https://issuer", "jwks": {"url": url}}]},
            },
        },
    ]
    snapshot = attrs.evolve(Snapshot.from_objects(objects), remote_jwks=remote)
    translation = translate_all(snapshot, SETTINGS)
    (status,) = translation.gateways["default/gw"].policy_statuses
    return status.ancestors[0].conditions[0]


def test_translation_reads_the_fetched_document_and_fails_closed_without_one() -> None:
    url = "https://issuer.example.com/keys"
    accepted = _translate({url: RemoteDocument(text=_jwks())}, url)
    assert accepted.status == "True", accepted.message
    missing = _translate({}, url)
    assert (missing.status, missing.reason) == ("False", "Invalid")
    assert missing.message.startswith("spec.jwt.providers[0].jwks.url: not fetched yet")
    assert "refused until it is fixed" in missing.message
    failed = _translate({url: RemoteDocument(problem=f"GET {url}: HTTP 404")}, url)
    assert failed.message.startswith(f"spec.jwt.providers[0].jwks.url: GET {url}: HTTP 404")
    plain = _translate({}, "http://issuer.example.com/keys")
    assert plain.message.startswith("spec.jwt.providers[0].jwks.url must be an https URL")
