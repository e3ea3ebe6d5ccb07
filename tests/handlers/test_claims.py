"""The claim mapping: which claims say who the user is, and what is made of them."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.claims import identity_from
from settings import ClaimMapping, Settings, SettingsError
from store.context import Identity

COGNITO = {
    "sub": "u1",
    "cognito:username": "ada",
    "cognito:groups": ["viewer", "readers"],
    "custom:tenant": "acme",
    "zoneinfo": "Europe/Paris",
    "locale": "fr-FR",
}


def test_cognito_claims_by_default() -> None:
    assert identity_from(COGNITO, ClaimMapping()) == Identity(
        name="ada",
        locale="fr-FR",
        time_zone="Europe/Paris",
        tenant="acme",
        roles=("viewer", "readers"),
        role="viewer",
    )


def test_plain_oidc_claims_by_default() -> None:
    claims = {"name": "Ada Lovelace", "roles": "member admin", "org_id": "org_1"}

    identity = identity_from(claims, ClaimMapping())

    assert (identity.name, identity.tenant) == ("Ada Lovelace", "org_1")
    assert (identity.roles, identity.role) == (("member", "admin"), "member")
    assert identity.time_zone is None and identity.locale is None


def test_a_configured_mapping_reads_other_and_nested_claims() -> None:
    mapping = Settings.from_env(
        {"CLAIM_ROLES": "realm_access.roles", "CLAIM_TENANT": "tid", "DEFAULT_ROLE": "viewer"}
    ).claims
    claims = {"realm_access": {"roles": ["member"]}, "tid": "t-42", "org_id": "ignored"}

    identity = identity_from(claims, mapping)

    assert (identity.role, identity.tenant) == ("member", "t-42")
    assert identity_from({}, mapping).role == "viewer"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"zoneinfo": "Not/AZone"}, {"time_zone": None}),
        ({"zoneinfo": "../../etc/passwd"}, {"time_zone": None}),
        ({"locale": "en-US; drop table"}, {"locale": None}),
        ({"name": "A\nB\tC"}, {"name": "A B C"}),
        ({"name": "x" * 500}, {"name": "x" * 100}),
        ({"name": 42, "roles": 7}, {"name": None, "roles": ()}),
    ],
    ids=["unknown-zone", "path-zone", "bad-locale", "control-chars", "long-name", "not-text"],
)
def test_claims_that_cannot_be_used_are_left_out_or_cleaned(
    claims: dict[str, Any], expected: dict[str, Any]
) -> None:
    identity = identity_from(claims, ClaimMapping())

    assert {name: getattr(identity, name) for name in expected} == expected


def test_an_unknown_default_role_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="DEFAULT_ROLE"):
        Settings.from_env({"DEFAULT_ROLE": "admin"})
