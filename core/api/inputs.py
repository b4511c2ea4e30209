"""Request-body parsing shared by every app's views."""

from __future__ import annotations

from rest_framework import serializers


def validated(serializer_class: type[serializers.Serializer], data, *, partial: bool = False) -> dict:
    """The validated body, or a 400 naming the fields. With ``partial`` (PATCH), fields not sent keep their stored
    values: DRF applies no defaults then."""
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def no_body(request) -> None:
    """For an action that takes no body: none, or an empty JSON object. Anything else is a mistake the caller should
    hear of (400, or 415 for another media type) rather than have ignored."""
    if not request.body:
        return
    if request.data != {}:
        raise serializers.ValidationError({"body": ["This request takes no body (or an empty JSON object)."]})
