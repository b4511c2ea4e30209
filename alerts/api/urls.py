from django.urls import path

from . import views

urlpatterns = [path("teams/<str:team>/alerts/", views.AlertListView.as_view(), name="alerts")]
