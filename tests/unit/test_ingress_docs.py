"""docs/ingress.md's annotation tables against the annotations the controller knows
(translate/ingress/annotations.py): every one is documented once, as handled."""

from __future__ import annotations

import re
from pathlib import Path

from agc_controller.translate.ingress.annotations import ANNOTATIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingress.md"
ROW = re.compile(
    r"^\| `((?:nginx|appgw)\.ingress\.kubernetes\.io/[a-z-]+)` \| (.*) \| (.*) \| (.*) \|$"
)


def rows() -> dict[str, tuple[str, str, str]]:
    found: dict[str, tuple[str, str, str]] = {}
    for line in DOC.read_text().splitlines():
        if match := ROW.match(line):
            name, becomes, local, azure = match.groups()
            assert name not in found, f"{name} is documented twice"
            found[name] = (becomes, local, azure)
    return found


def test_every_known_annotation_is_documented_and_nothing_else() -> None:
    assert set(rows()) == set(ANNOTATIONS)


def test_each_row_says_how_the_annotation_is_handled() -> None:
    documented = rows()
    for name, annotation in ANNOTATIONS.items():
        becomes, local, azure = documented[name]
        if annotation.handling == "refused":
            assert becomes.startswith("refused"), name
            assert (local, azure) == ("not served", "not served"), name
        elif annotation.handling == "guarding":
            assert "guards access" in becomes, name
            assert (local, azure) == ("not served", "not served"), name
        elif annotation.handling == "unsupported":
            assert becomes.startswith("not supported"), name
            assert (local, azure) == ("not supported", "not supported"), name
        else:
            # a guard the local data plane cannot honour keeps the Ingress from being served;
            # what names an Application Gateway's own objects is reported there
            assert (
                local == "done"
                or (annotation.guards and local.startswith("not served"))
                or (name.startswith("appgw.") and local.startswith("reported"))
            ), name
            assert not becomes.startswith(("not supported", "refused")), name
