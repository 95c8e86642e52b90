"""Backend hosts in a network namespace of our own (root needed).

EndpointSlice addresses may not be loopback, so local backends (the main
job's examples, the e2e tests' echo servers) live in a namespace joined to
the host by a veth pair: the host side gets `<subnet>.1`, each backend one
more address of the /24 inside the namespace. Traffic never leaves the
machine. `for_process()` derives names and subnet from the process id, so
parallel test runs do not collide.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import attrs

from devcluster.spawn import python_env

# 10.213.0.0/16 is carved into one /24 per namespace
SUBNET_PREFIX = "10.213"


class NetnsError(RuntimeError):
    """A network namespace could not be set up; the message says what `ip` said."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetnsError(
            f"`ip {' '.join(args)}` failed: {done.stderr.strip() or f'exit {done.returncode}'}. "
            "The example backends run in a network namespace: run as root, on a host (or "
            "container) that allows `ip netns`."
        )


@attrs.define
class BackendNamespace:
    name: str
    subnet: str  # "10.213.7" (a /24)
    interface: str  # the namespace end of the veth pair
    _next_host: int = 2
    _processes: list[subprocess.Popen[bytes]] = attrs.field(factory=list)

    @classmethod
    def for_process(cls) -> BackendNamespace:
        """A namespace named after this process (tests), created fresh."""
        tag = os.getpid() % 249 + 1
        return cls.create(name=f"agc-e2e-{os.getpid()}", tag=tag)

    @classmethod
    def create(cls, *, name: str, tag: int) -> BackendNamespace:
        """Create namespace `name` with subnet 10.213.`tag`.0/24 (replacing a stale one)."""
        host_if, ns_if = f"agch{tag}", f"agcn{tag}"
        ns = cls(name=name, subnet=f"{SUBNET_PREFIX}.{tag}", interface=ns_if)
        subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        _ip("netns", "add", ns.name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.subnet}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        _ip("netns", "exec", ns.name, "ip", "link", "set", ns_if, "up")
        _ip(
            "netns",
            "exec",
            ns.name,
            "ip",
            "route",
            "add",
            "default",
            "via",
            f"{ns.subnet}.1",
            "dev",
            ns_if,
            "onlink",
        )
        return ns

    def add_address(self) -> str:
        address = f"{self.subnet}.{self._next_host}"
        self._next_host += 1
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{address}/24", "dev", self.interface)
        return address

    def start_echo(
        self,
        name: str,
        *,
        port: int = 8080,
        args: tuple[str, ...] = (),
        module: str = "devcluster.echo",
    ) -> str:
        """Start an echo backend on a new address; returns the address once it listens.

        `args`: extra echo arguments (--tls-cert/--tls-key/--client-ca, --status).
        `module`: another server taking the same --address/--port/--name (gRPC).
        """
        address = self.add_address()
        echo = [
            "-m",
            module,
            "--address",
            address,
            "--port",
            str(port),
            "--name",
            name,
        ]
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, *echo, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=python_env(),  # `ip netns exec` passes it on
        )
        self._processes.append(process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((address, port), timeout=1):
                    return address
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"echo backend {name} at {address}:{port} did not start")

    def destroy(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
