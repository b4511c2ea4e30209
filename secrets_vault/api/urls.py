from django.urls import path

from . import views

urlpatterns = [
    path("teams/<str:team>/secrets/", views.SecretListView.as_view(), name="secrets"),
    path("teams/<str:team>/secrets/<str:name>/", views.SecretDetailView.as_view(), name="secret"),
]
