"""A bounded keep-alive load (wrk, which never retries) and its failure count."""

from __future__ import annotations

import asyncio
import re

import attrs


@attrs.frozen
class LoadResult:
    requests: int
    socket_errors: int
    non_2xx_3xx: int
    output: str

    @property
    def failed(self) -> int:
        return self.socket_errors + self.non_2xx_3xx


def parse_wrk(output: str) -> LoadResult:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(g) for g in errors.groups()) if errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(requests, socket_errors, int(non_2xx.group(1)) if non_2xx else 0, output)


class Load:
    """`async with Load(url, ...) as load:` runs wrk for `seconds`; `load.result` after."""

    def __init__(
        self,
        url: str,
        *,
        seconds: int = 8,
        connections: int = 16,
        host: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self._argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra]
        if host:
            self._argv += ["-H", f"Host: {host}"]
        self._argv.append(url)
        self._process: asyncio.subprocess.Process | None = None
        self.result: LoadResult | None = None

    async def __aenter__(self) -> Load:
        self._process = await asyncio.create_subprocess_exec(
            *self._argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        await asyncio.sleep(0.5)  # let the connections open before the test changes things
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._process is not None
        out, _ = await asyncio.wait_for(self._process.communicate(), 60)
        self.result = parse_wrk(out.decode())
