"""JWKS documents that AuthPolicies name by URL: fetched, kept, refreshed.

AuthPolicy JWT providers may name their keys by URL (`jwks.url`, the issuer's
`jwks_uri`). Translation stays pure: it reads the documents from the cache
(`Cache.remote_jwks`, url -> RemoteDocument), which this fetcher fills. The
controller fetches rather than each data plane, so the keys reach every data
plane (local, in-cluster, every replica) as data — the way a JWKS in a Secret
does — and an identity provider sees one client, not one per NGINX worker.

- Every `interval_s` the fetcher reads which URLs the cached AuthPolicies name;
  a new one is fetched at once, each known one every `refresh_s`.
- A failed fetch keeps the last good document (its keys keep working) and is
  tried again after `retry_s`, doubling up to `refresh_s`; a URL never fetched
  successfully is a problem its policies report (they fail closed).
- A document that changed (or a problem that appeared or cleared) calls
  `on_change(url)`, which enqueues the Gateways of the policies naming it.
- HTTPS only; the server's certificate is verified against the system's CAs,
  or `ca_file`'s. Answers over MAX_BYTES are refused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable

import aiohttp
import structlog

from agc_controller.translate.snapshot import RemoteDocument

log = structlog.get_logger(__name__)

MAX_BYTES = 1 << 20
TIMEOUT_S = 10.0
RETRY_S = 5.0


class JwksFetcher:
    def __init__(
        self,
        documents: dict[str, RemoteDocument],
        *,
        wanted: Callable[[], Iterable[str]],
        on_change: Callable[[str], None],
        refresh_s: float = 300.0,
        ca_file: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.documents = documents
        self._wanted = wanted
        self._on_change = on_change
        self._refresh_s = refresh_s
        self._interval_s = interval_s
        self._ssl = ssl.create_default_context(cafile=ca_file)
        # url -> (when it is due again, the delay after a failure there)
        self._due: dict[str, tuple[float, float]] = {}

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.pass_once(session)
                await asyncio.sleep(self._interval_s)

    async def pass_once(self, session: aiohttp.ClientSession) -> None:
        """Fetch every wanted URL that is due; forget the ones nobody names."""
        wanted = set(self._wanted())
        for url in [u for u in self.documents if u not in wanted]:
            del self.documents[url]
            self._due.pop(url, None)
        now = time.monotonic()
        due = [u for u in sorted(wanted) if self._due.get(u, (0.0, 0.0))[0] <= now]
        await asyncio.gather(*(self._refresh(session, url) for url in due))

    async def _refresh(self, session: aiohttp.ClientSession, url: str) -> None:
        before = self.documents.get(url)
        try:
            text = await self._fetch(session, url)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            delay = min(self._due.get(url, (0.0, RETRY_S / 2))[1] * 2, self._refresh_s)
            self._due[url] = (time.monotonic() + delay, delay)
            problem = f"GET {url}: {e or type(e).__name__}"
            log.warning("jwks_fetch_failed", url=url, error=problem, retry_s=delay)
            if before is not None and before.text is not None:
                return  # the last good keys keep working
            after = RemoteDocument(problem=problem)
        else:
            self._due[url] = (time.monotonic() + self._refresh_s, RETRY_S / 2)
            after = RemoteDocument(text=text)
        if after != before:
            self.documents[url] = after
            if after.text is not None:
                log.info("jwks_fetched", url=url)
            self._on_change(url)

    async def _fetch(self, session: aiohttp.ClientSession, url: str) -> str:
        async with session.get(
            url, ssl=self._ssl, allow_redirects=False, headers={"Accept": "application/json"}
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = await response.content.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise ValueError(f"the document is larger than {MAX_BYTES} bytes")
            return body.decode()
