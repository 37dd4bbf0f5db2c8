from __future__ import annotations

from rest_framework import serializers

from hub.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "timestamp", "username", "user", "client_key", "client_key_name", "action", "verb",
                  "model", "object_pk", "object_repr", "changes", "ip_address", "method", "path", "status_code"]
        read_only_fields = fields


AUDIT_CSV_COLUMNS = AuditEventSerializer.Meta.fields
