"""Docker image references and repository names, checked as the engine will check them, so
that a bad one is a usage error naming the field, not a 400 from Docker after a build.

The grammar is distribution/reference's (reference/regexp.go, as Docker uses it):

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ["/" path-component]*     (<= 255 chars)
    domain           := domain-component ["." domain-component]* [":" port-number]
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]*/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex     algorithm := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*/
                                              hex := /[0-9a-fA-F]{32,}/ (sha256: exactly 64)
"""

from __future__ import annotations

import re

MAX_NAME = 255
# One path component: lowercase alphanumerics joined by '.', '_', '__' or any run of '-'.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{COMPONENT}(?:/{COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>[0-9a-fA-F]{32,}))?"
)
REPOSITORY_PREFIX = "explorer/"  # a scenario NAME becomes the image repository explorer/NAME


def reference_problem(ref: str) -> str | None:
    """Why Docker would refuse `ref` as an image reference, or None."""
    match = REFERENCE.fullmatch(ref)
    if match is None:
        if ref != ref.lower() and REFERENCE.fullmatch(ref.lower()):
            return f"{ref!r} is not an image reference: repository names are lowercase"
        return (
            f"{ref!r} is not an image reference (expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST], "
            "lowercase, e.g. redis:7.2 or mongo@sha256:<64 hex digits>)"
        )
    if len(match["name"]) > MAX_NAME:
        return f"{ref!r}: the repository name is longer than {MAX_NAME} characters"
    if match["algorithm"] == "sha256" and len(match["hex"]) != 64:
        return f"{ref!r}: a sha256 digest has 64 hex digits, not {len(match['hex'])}"
    return None


def scenario_name_problem(name: str) -> str | None:
    """Why `name` cannot name a scenario (it becomes the repository explorer/NAME), or None."""
    if not re.fullmatch(COMPONENT, name) or "." in name:
        return (
            f"{name!r} is not a valid scenario name: lowercase letters and digits, joined by single "
            "'_', '__' or '-' (no leading, trailing or other separators), as a Docker repository name"
        )
    if len(REPOSITORY_PREFIX + name) > MAX_NAME:
        return f"{name!r} is too long: the image repository explorer/NAME must be at most {MAX_NAME} characters"
    return None
