"""A throwaway CA-less TLS certificate for the ARM test server on 127.0.0.1.

The SDK's bearer-token policy refuses plain HTTP, as it should; the supported
way to talk to a private endpoint is to trust its certificate
(`connection_verify=<CA bundle>`), which is what the tests do with this
self-signed certificate.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from agc_controller.selfsigned import self_signed


def server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server SSL context for 127.0.0.1 and the path of the PEM clients must trust."""
    cert_pem, key_pem = self_signed(
        "arm-test-server", days=1, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert_path, key_path = directory / "arm.crt", directory / "arm.key"
    cert_path.write_text(cert_pem)
    key_path.write_text(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
