from rest_framework import serializers

from secrets_vault.models import Secret
from secrets_vault.services import GENERATED_KINDS


class SecretCreateSerializer(serializers.Serializer):
    """A value, or ``generate`` to have the server make one (answered once)."""

    name = serializers.CharField(max_length=64, trim_whitespace=False)
    value = serializers.CharField(write_only=True, trim_whitespace=False, max_length=16384, required=False)
    generate = serializers.ChoiceField(choices=GENERATED_KINDS, required=False)

    def validate(self, attrs: dict) -> dict:
        if ("value" in attrs) == ("generate" in attrs):
            field = "generate" if "value" in attrs else "value"
            raise serializers.ValidationError({field: ["Give either a value or generate, not both and not neither."]})
        return attrs


class SecretValueSerializer(serializers.Serializer):
    value = serializers.CharField(write_only=True, trim_whitespace=False, max_length=16384)


class SecretSerializer(serializers.ModelSerializer):
    """Names and bookkeeping only: the value is write-only everywhere."""

    created_by = serializers.CharField(source="created_by.username", default=None)
    updated_by = serializers.CharField(source="updated_by.username", default=None)

    class Meta:
        model = Secret
        fields = ["name", "created_at", "updated_at", "created_by", "updated_by"]


class SecretCreatedSerializer(SecretSerializer):
    """The answer to a create: with ``generate``, the value made, in this answer only."""

    value = serializers.CharField(
        required=False, read_only=True, help_text="Only when generate was asked: the value, answered this once."
    )

    class Meta(SecretSerializer.Meta):
        fields = [*SecretSerializer.Meta.fields, "value"]
