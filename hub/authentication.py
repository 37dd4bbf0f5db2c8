"""``Authorization: Api-Key <key>``: client keys authenticate as their owner on every endpoint."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from hub.features import feature_enabled
from hub.models import ClientKey

KEYWORD = "Api-Key"


class ClientKeyAuthentication(authentication.BaseAuthentication):
    """Looks the key up by its prefix and checks the hash, expiry and the owner's state.

    Every check runs on every request, so a deleted key, an expired key or a deactivated owner
    stops working at once; nothing is cached.
    """

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        keyword, _, raw_key = header.partition(" ")
        if keyword != KEYWORD:
            return None
        raw_key = raw_key.strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed("No client key given.")
        if not feature_enabled("client_keys"):
            raise exceptions.AuthenticationFailed("Client keys are disabled on this hub.")
        key = ClientKey.find(raw_key)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid client key.")
        if key.is_expired:
            raise exceptions.AuthenticationFailed("Client key has expired.")
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        key.touch()
        return key.user, key

    def authenticate_header(self, request) -> str:
        return KEYWORD


class ClientKeyScheme(OpenApiAuthenticationExtension):
    target_class = "hub.authentication.ClientKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "Client key, sent as `Api-Key <key>`."}
