"""Tokens (RS256 JWT), the public key that verifies them, and client keys."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from hub import audit
from hub.api.serializers.clientkeys import ClientKeySerializer
from hub.api.throttling import AuthThrottle
from hub.api.viewsets import HubModelViewSet
from hub.filtersets import ClientKeyFilterSet
from hub.models import ClientKey

User = get_user_model()


class AuthThrottleMixin:
    """Credential endpoints get their own, tighter rate (THROTTLE_AUTH) against guessing."""

    throttle_classes = [AuthThrottle]
    throttle_scope = "auth"


class TokenObtainView(AuthThrottleMixin, TokenObtainPairView):
    """Exchange a username and password for an access and a refresh token."""

    def post(self, request, *args, **kwargs):
        serializer = TokenObtainPairSerializer(data=request.data, context={"request": request})
        username = str(request.data.get("username", ""))[:150] if isinstance(request.data, dict) else ""
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        except exceptions.AuthenticationFailed as exc:
            # Answered, not raised: a raised error rolls the request's transaction back, and the
            # failed attempt must stay in the audit trail.
            audit.record(request, "login_failed", model=User, username=username, status_code=401)
            return Response({"detail": exc.detail, "code": exc.get_codes()}, status=401,
                            headers={"WWW-Authenticate": 'Bearer realm="api"'})
        request.user = serializer.user
        audit.record(request, "login", instance=serializer.user)
        return Response(serializer.validated_data)


class TokenRefreshHubView(AuthThrottleMixin, TokenRefreshView):
    """Takes a refresh token and returns a new access token if the refresh token is valid."""


class TokenVerifyRequest(serializers.Serializer):
    token = serializers.CharField(max_length=10000)
    type = serializers.ChoiceField(choices=["access", "refresh"], help_text="Token type e.g: access or refresh")


class TokenVerifyView(AuthThrottleMixin, APIView):
    """Verifies that the token is valid (signature, expiry, type) AND its owner exists AND is active."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request) -> str:
        # With no authenticators DRF would turn 401 into 403; an invalid token is a 401.
        return 'Bearer realm="api"'

    @extend_schema(request=TokenVerifyRequest, responses={200: TokenVerifyRequest, 401: OpenApiResponse()})
    def post(self, request):
        serializer = TokenVerifyRequest(data=request.data)
        serializer.is_valid(raise_exception=True)
        token_class = AccessToken if serializer.validated_data["type"] == "access" else RefreshToken
        try:
            token = token_class(serializer.validated_data["token"])
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
        user_id = token.get(jwt_settings.USER_ID_CLAIM)
        user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise InvalidToken("Token owner does not exist.")
        if not user.is_active:
            raise InvalidToken("Token owner is inactive.")
        return Response(serializer.validated_data)


class PublicKeyView(APIView):
    """API endpoint for retrieving the public key that is used for token verification (PEM)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={(200, "application/x-pem-file"): OpenApiTypes.STR})
    def get(self, request):
        return HttpResponse(settings.JWT_PUBLIC_KEY, content_type="application/x-pem-file")


class ClientKeyViewSet(HubModelViewSet):
    """API endpoint for managing client keys. A user sees their own keys; administrators see all."""

    queryset = ClientKey.objects.select_related("user")
    serializer_class = ClientKeySerializer
    filterset_class = ClientKeyFilterSet
    owners_may_create = True
    owner_actions = ("view", "change", "delete")

    def owned_filter(self, user) -> Q:
        return Q(user=user)

    def is_owner(self, user, obj) -> bool:
        return obj.user_id == user.pk

    def create_instance(self, serializer):
        data = serializer.validated_data
        key, clear = ClientKey.issue(user=self.request.user, name=data["name"], expires_at=data.get("expires_at"))
        key.clear_key = clear  # shown in this response only
        return key
