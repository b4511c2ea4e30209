"""Every error under ``/api/`` is JSON ``{"detail", "code", "errors": {field: [reasons]}}``.

Errors raised in an API view pass through ``exception_handler`` (DRF's hook). What no API view sees — a path no
route claims, and the 400/403/500 pages Django itself answers — comes from the error views at the end, which
answer JSON under ``/api/`` and leave every other path to Django's own pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.http import escape_leading_slashes
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError


def _flatten(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, dict):
                for sub, reasons in _flatten(value).items():
                    out[f"{key}.{sub}"] = reasons
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for i, item in enumerate(value):
                    for sub, reasons in _flatten(item).items():
                        out[f"{key}[{i}].{sub}"] = reasons
            else:
                out[key] = [str(v) for v in (value if isinstance(value, list) else [value])]
        return out
    return {"non_field_errors": [str(v) for v in (detail if isinstance(detail, list) else [detail])]}


def _body(message: str, code: str, errors: dict[str, list[str]] | None = None) -> dict:
    return {"detail": message, "code": code, "errors": errors or {}}


def exception_handler(exc, context):
    response = _error_response(exc, context)
    if response is not None and context.get("request") is not None:
        # Views that answer YAML (the schema) or HTML (the docs) on success still answer errors in JSON.
        context["request"].accepted_renderer = JSONRenderer()
        context["request"].accepted_media_type = JSONRenderer.media_type
    return response


def _error_response(exc, context) -> Response | None:
    if isinstance(exc, ApplicationError):
        errors = {exc.field: [exc.message]} if exc.field else {}
        return Response(_body(exc.message, exc.code, errors), status=exc.status_code, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        message = f"The request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        return Response(_body(message, "request_too_large"), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        first_field, reasons = next(iter(errors.items()), ("", ["Invalid input."]))
        message = reasons[0] if first_field in ("", "non_field_errors") else f"{first_field}: {reasons[0]}"
        response.data = _body(message, "invalid", errors)
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        code = getattr(getattr(exc, "detail", None), "code", None) or getattr(exc, "default_code", "error")
        response.data = _body(str(detail), str(code))
    return response


# --- What Django answers itself, under /api/ ------------------------------------------------------------


# The URL pattern (config.urls) that sends every /api/ path no route claims to ``api_not_found``.
API_PATHS = r"^api(?:/|$)"


def is_api_path(path: str) -> bool:
    """Whether ``path`` (a request's ``path_info``, starting with a slash) is under /api/."""
    return re.match(API_PATHS, path.removeprefix("/")) is not None


@csrf_exempt  # a refused CSRF check would answer an HTML 403 before this view could say "not found"
def api_not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Any ``/api/`` path no route claims, with any method: a JSON 404.

    Without the trailing slash every API path has, a GET or HEAD is redirected as Django does for other pages;
    other methods are told the right path instead, since following a redirect would drop their body.
    """
    path = request.path_info
    if not path.endswith("/") and _is_route(f"{path}/", getattr(request, "urlconf", None)):
        if request.method in ("GET", "HEAD"):
            return HttpResponsePermanentRedirect(escape_leading_slashes(request.get_full_path(force_append_slash=True)))
        message = f"No API endpoint at {path}: API paths end with a slash ({path}/)."
    else:
        message = f"No API endpoint at {path}. The endpoints are listed at /api/docs/."
    return _json_error(message, "not_found", status.HTTP_404_NOT_FOUND)


def _json_error(message: str, code: str, status_code: int) -> JsonResponse:
    # Compact, as DRF's renderer writes the errors of the API views.
    return JsonResponse(_body(message, code), status=status_code, json_dumps_params={"separators": (",", ":")})


def _is_route(path: str, urlconf) -> bool:
    try:
        return resolve(path, urlconf).func is not api_not_found
    except Resolver404:
        return False


def _json_under_api(django_view: Callable[..., HttpResponse], status_code: int, code: str, message: str):
    """Django's error view ``django_view``, answering ``message`` as JSON for paths under ``/api/``."""

    def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if is_api_path(request.path_info):
            return _json_error(message, code, status_code)
        return django_view(request, *args, **kwargs)

    return view


# Named by config.urls as handler400, handler403 and handler500. Their messages say no more than the status: the
# exception (a refused Host header, say) is logged, not shown.
bad_request = _json_under_api(defaults.bad_request, 400, "bad_request", "Bad request.")
permission_denied = _json_under_api(defaults.permission_denied, 403, "permission_denied", "Permission denied.")
server_error = _json_under_api(defaults.server_error, 500, "server_error", "Server error; the details are logged.")
