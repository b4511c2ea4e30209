"""Answer rendering shared by every app's views."""

from __future__ import annotations

import functools
from typing import Any

from rest_framework import serializers


def represented(serializer_class: type[serializers.Serializer], instance: Any) -> dict[str, Any]:
    """What ``serializer_class(instance).data`` is, for a serializer that needs no context (no request, no URLs).

    A serializer builds its fields afresh for every instance it is made with (a ModelSerializer reads its model's
    fields to do so), which costs more than representing the instance. One serializer per class, made once, has
    fields that hold no state between calls, so every thread shares it."""
    return _shared(serializer_class).to_representation(instance)


@functools.cache
def _shared(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    serializer = serializer_class()
    serializer.fields  # noqa: B018 (built here, once, rather than by two threads' first calls at once)
    return serializer
