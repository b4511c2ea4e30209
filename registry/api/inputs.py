"""Request-body parsing shared by every app's views."""

from __future__ import annotations

from rest_framework import serializers


def validated(serializer_class: type[serializers.Serializer], data, *, partial: bool = False) -> dict:
    """The validated body, or a 400 naming the fields. With ``partial`` (PATCH), fields not sent keep their stored
    values: DRF applies no defaults then."""
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
