from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.metrics import metrics_view
from core.api.exceptions import API_PATHS, api_not_found

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("registry.api.urls")),
    path("api/v1/", include("secrets_vault.api.urls")),
    path("api/v1/", include("automations.api.urls")),
    path("api/v1/", include("launch.api.urls")),
    path("api/v1/", include("alerts.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: an OPTIONS answer would be rendered with the page's template renderer, which has no template for it.
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    # Last: whatever no route above claims under /api/ is a JSON 404, not Django's HTML page.
    re_path(API_PATHS, api_not_found),
]

handler400 = "core.api.exceptions.bad_request"
handler403 = "core.api.exceptions.permission_denied"
handler500 = "core.api.exceptions.server_error"
