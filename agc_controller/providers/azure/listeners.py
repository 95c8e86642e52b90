"""HTTP listeners, SSL certificates, SSL profiles and trusted client certificates.

One Application Gateway listener per (model host, frontend IP): a host is one
hostname on one port, which is exactly what a multi-site listener matches
(`*` becomes a basic listener without host names). Certificates and trusted
client CAs are named after a digest of their PEM, so a changed Secret is a new
child and an unchanged one is recognised without ARM returning its content.
"""

from __future__ import annotations

import base64

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json
from agc_controller.providers.azure.frontends import FrontendIp
from agc_controller.translate.model import Frontend, Host


def listener_slug(ip: FrontendIp, host: Host) -> str:
    """The readable part shared by a host's listener, routing rule and path map names."""
    hostname = "any" if host.hostname == "*" else host.hostname.replace("*", "star")
    return f"{ip.label}-{host.port}-{hostname}"


def add_listener(
    c: Collector, *, host: Host, frontend: Frontend, ip: FrontendIp, port: str
) -> Json:
    props: Json = {
        "frontendIPConfiguration": {"id": ip.id},
        "frontendPort": c.ref("frontendPorts", port),
        "protocol": "Https" if frontend.protocol == "HTTPS" else "Http",
    }
    if host.hostname != "*":
        props["hostNames"] = [host.hostname]
    if frontend.protocol == "HTTPS":
        if frontend.certificates or frontend.gateway_certificates or frontend.key_vault_certificate:
            props["sslCertificate"] = _certificate(c, frontend)
        # a listener with host names picks its certificate by SNI
        props["requireServerNameIndication"] = host.hostname != "*"
        if frontend.client_validation is not None:
            props["sslProfile"] = _ssl_profile(c, frontend)
    return c.add(
        "httpListeners", naming.child_name(c.gateway, "lis", listener_slug(ip, host)), props
    )


def _certificate(c: Collector, frontend: Frontend) -> Json:
    key_vault = frontend.key_vault_certificate
    count = len(frontend.certificates) + len(frontend.gateway_certificates) + bool(key_vault)
    if count > 1:
        c.problem(
            frontend.name,
            f"Listener {frontend.name} has {count} certificates; an Application Gateway "
            "listener serves one, so only the first is used (Key Vault's, then one already "
            "on the Application Gateway, then a Secret's)",
        )
    if key_vault is not None:
        # read by the Application Gateway with its user-assigned identity (merge.py checks
        # it has one); named after the secret's identifier, so a new one is a new child
        return c.add(
            "sslCertificates",
            naming.child_name(c.gateway, "cert", "kv-" + naming.digest(key_vault, 16)),
            {"keyVaultSecretId": key_vault},
        )
    if frontend.gateway_certificates:
        return c.external_ref("sslCertificates", frontend.gateway_certificates[0])
    certificate = frontend.certificates[0]
    name = naming.child_name(
        c.gateway, "cert", naming.digest(certificate.cert_pem + certificate.key_pem, 16)
    )
    c.certificates[name] = certificate
    # the PFX data is filled in at merge time, only if ARM does not have this certificate
    return c.add("sslCertificates", name, {})


def _ssl_profile(c: Collector, frontend: Frontend) -> Json:
    validation = frontend.client_validation
    assert validation is not None
    if validation.insecure_fallback:
        c.problem(
            frontend.name,
            f"Listener {frontend.name}: spec.tls.frontend mode AllowInsecureFallback is not "
            "supported by the azure provider; client certificates are required",
        )
    ca = c.add(
        "trustedClientCertificates",
        naming.child_name(c.gateway, "client-ca", naming.digest(validation.ca_pem, 16)),
        {"data": _b64(validation.ca_pem)},
    )
    # a ListenerSet's listener is "namespace/listenerset/name" in the model, and "/" turns
    # into "-" in a child's name: a digest keeps it apart from a Gateway listener that is
    # spelled with dashes
    readable = frontend.name
    if "/" in readable:
        readable = f"{readable}-{naming.digest(readable)}"
    return c.add(
        "sslProfiles",
        naming.child_name(c.gateway, "sslprof", readable),
        {
            "trustedClientCertificates": [ca],
            "clientAuthConfiguration": {"verifyClientCertIssuerDN": False},
        },
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
