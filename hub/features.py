"""Feature flags: the registry of known flags and the check used in code.

A flag is defined here (name, description, default) and its row is created by the post-migrate
hook, so enabling a flag is a PATCH of ``/api/features/{name}/`` and never a code change.
Later capabilities add their flags to FEATURES.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureDefinition:
    name: str
    description: str
    default: bool


FEATURES: tuple[FeatureDefinition, ...] = (
    FeatureDefinition(
        "client_keys",
        "Allow authentication with client keys (Authorization: Api-Key <key>). Turn off to refuse every "
        "client key at once, e.g. during a security incident.",
        True,
    ),
    FeatureDefinition(
        "self_service_profile",
        "Let users edit their own name, e-mail and profile without an administrator.",
        True,
    ),
)


def feature_enabled(name: str) -> bool:
    """Whether flag ``name`` is on (its registry default if the row does not exist yet)."""
    from hub.models import Feature

    enabled = Feature.objects.filter(name=name).values_list("enabled", flat=True).first()
    if enabled is None:
        return next((f.default for f in FEATURES if f.name == name), False)
    return bool(enabled)


def sync_features() -> None:
    """Create rows for flags added to the registry; keep existing rows' ``enabled`` as set."""
    from hub.models import Feature

    for definition in FEATURES:
        Feature.objects.update_or_create(
            name=definition.name,
            defaults={"description": definition.description},
            create_defaults={"description": definition.description, "enabled": definition.default},
        )
