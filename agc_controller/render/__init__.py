"""Offline translation for people (`agc-controller translate`, the golden tests).

`documents` reads manifests and turns translations into plain documents;
`-o NAME` outputs come from the registry here. Built in: `all`, `model`,
`status`; each provider's view lives beside them in this package (`nginx`:
the local data plane's configuration and state, `arm`: the Application
Gateway body) and is registered below, so the CLI needs no edit for a new one.
`--provider NAME` picks whose translation settings (capabilities, features)
and dry run (what it would refuse, offline) every output uses; an output that
shows one provider's view belongs to that provider.
The providers never import this package: rendering sits above them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from agc_controller.providers.azure import azure_translate_settings
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.environment import host_paths, socket_root
from agc_controller.render import arm, nginx
from agc_controller.render.documents import (
    ASSUMED_RESULT,
    DryRun,
    InputError,
    LoadedObjects,
    Migration,
    Translations,
    load_objects,
    pem_digest,
    plain,
    render_all,
    render_gateway_api,
    render_model,
    render_status,
    to_yaml,
    translate_all,
)
from agc_controller.translate import TranslateSettings

__all__ = [
    "ASSUMED_RESULT",
    "InputError",
    "LoadedObjects",
    "Migration",
    "OfflineProvider",
    "Output",
    "Translations",
    "load_objects",
    "outputs",
    "pem_digest",
    "plain",
    "providers",
    "register_output",
    "render_all",
    "render_model",
    "render_status",
    "to_yaml",
    "translate_all",
]

Renderer = Callable[[Translations], str]


@attrs.frozen
class OfflineProvider:
    # controller name -> the provider's translation settings
    settings: Callable[[str], TranslateSettings]
    # what it would report for each Gateway, offline
    dry_run: DryRun


_PROVIDERS = {
    "local": OfflineProvider(settings=local_translate_settings, dry_run=nginx.local_results),
    "azure": OfflineProvider(settings=azure_translate_settings, dry_run=arm.azure_results),
}


def providers() -> Mapping[str, OfflineProvider]:
    return dict(_PROVIDERS)


@attrs.frozen
class Output:
    name: str
    help: str
    render: Renderer
    # the provider whose view this output shows; None: any provider's
    provider: str | None = None


# name -> output: the built-ins and the providers' views, registered below
_OUTPUTS: dict[str, Output] = {}


def register_output(name: str, render: Renderer, *, help: str, provider: str | None = None) -> None:
    """Make `-o name` available. A name is registered once; a clash is a bug."""
    if name in _OUTPUTS:
        raise ValueError(f"output {name!r} is already registered")
    _OUTPUTS[name] = Output(name=name, help=help, render=render, provider=provider)


def outputs() -> Mapping[str, Output]:
    return dict(sorted(_OUTPUTS.items()))


register_output(
    "all", lambda t: to_yaml(render_all(t)), help="the ALB model and every status (default)"
)
register_output("model", lambda t: to_yaml(render_model(t)), help="the ALB model per Gateway")
register_output(
    "status",
    lambda t: to_yaml(render_status(t)),
    help="the status of every GatewayClass, Gateway, route and policy",
)
register_output(
    "gateway-api",
    render_gateway_api,
    help="the input's Ingresses as Gateway API objects (a Gateway per IngressClass, "
    "HTTPRoutes, ReferenceGrants), what could not be converted as comments",
)
register_output(
    "nginx",
    lambda translations: nginx.render_nginx(translations, host=host_paths(), sockets=socket_root()),
    help="the local data plane's NGINX configuration and routing state per Gateway",
    provider="local",
)
register_output(
    "arm",
    arm.render_arm,
    help="the Application Gateway v2 body the azure provider would PUT (ARM JSON as YAML)",
    provider="azure",
)
