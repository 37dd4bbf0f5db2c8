from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from hub.models import ClientKey


class ClientKeySerializer(serializers.HyperlinkedModelSerializer):
    """A client key. ``api_key`` holds the clear key in the creation response only."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="clientkey-detail")
    user = serializers.CharField(source="user.username", read_only=True)
    api_key = serializers.SerializerMethodField(help_text="The key; returned once, in the creation response.")
    name = serializers.CharField(max_length=150, help_text="Name of the client key")

    class Meta:
        model = ClientKey
        fields = ["id", "url", "name", "user", "api_key", "prefix", "created", "expires_at", "last_used"]
        read_only_fields = ["prefix", "created", "last_used"]

    def get_api_key(self, key: ClientKey) -> str | None:
        return getattr(key, "clear_key", None)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value
