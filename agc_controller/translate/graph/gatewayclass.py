"""GatewayClass: accepted when it names our controller and asks for nothing we lack."""

from __future__ import annotations

from agc_controller.core import conditions as c
from agc_controller.core.status import GatewayClassStatus
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj


def is_ours(gateway_class: Obj | None, settings: TranslateSettings) -> bool:
    return bool(
        gateway_class
        and (gateway_class.get("spec") or {}).get("controllerName") == settings.controller_name
    )


def is_accepted(gateway_class: Obj, settings: TranslateSettings) -> bool:
    return is_ours(gateway_class, settings) and not (gateway_class.get("spec") or {}).get(
        "parametersRef"
    )


def gateway_class_status(gateway_class: Obj, settings: TranslateSettings) -> GatewayClassStatus:
    generation = int(gateway_class["metadata"].get("generation", 1))
    if (gateway_class.get("spec") or {}).get("parametersRef"):
        accepted = c.false(
            c.ACCEPTED,
            c.R_INVALID_PARAMETERS,
            "spec.parametersRef is not supported by this controller: it takes no class parameters",
            generation,
        )
    else:
        accepted = c.true(c.ACCEPTED, c.R_ACCEPTED, "The GatewayClass is accepted", generation)
    return GatewayClassStatus(
        name=gateway_class["metadata"]["name"],
        conditions=(accepted,),
        supported_features=tuple(sorted(settings.supported_features)),
    )
