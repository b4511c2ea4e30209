"""Listings page with ``?limit=`` and ``?offset=``, both bounded so no number reaches SQL out of range."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000
MAX_OFFSET = 2**62  # past any real table; PostgreSQL's OFFSET is a bigint


class Pagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
