from django.urls import path

from . import views

team = "teams/<str:team>/"

urlpatterns = [
    path("automation-presets/", views.PresetListView.as_view(), name="automation-presets"),
    path(team + "webhooks/", views.WebhookListView.as_view(), name="webhooks"),
    path(team + "webhooks/<str:webhook_id>/", views.WebhookDetailView.as_view(), name="webhook"),
    path(team + "webhooks/<str:webhook_id>/test/", views.WebhookTestView.as_view(), name="webhook-test"),
    path(team + "webhooks/<str:webhook_id>/recover/", views.WebhookRecoverView.as_view(), name="webhook-recover"),
    path(team + "automations/", views.AutomationListView.as_view(), name="automations"),
    path(team + "automations/<str:automation_id>/", views.AutomationDetailView.as_view(), name="automation"),
    path(team + "automations/<str:automation_id>/runs/", views.AutomationRunListView.as_view(), name="automation-runs"),
    path(team + "automations/<str:automation_id>/run/", views.AutomationRunView.as_view(), name="automation-run"),
    path(
        team + "automations/<str:automation_id>/preview/",
        views.AutomationPreviewView.as_view(),
        name="automation-preview",
    ),
    path(team + "deliveries/", views.DeliveryListView.as_view(), name="deliveries"),
    path(team + "deliveries/<str:delivery_id>/", views.DeliveryDetailView.as_view(), name="delivery"),
    path(team + "deliveries/<str:delivery_id>/redeliver/", views.DeliveryRedeliverView.as_view(), name="redeliver"),
]
