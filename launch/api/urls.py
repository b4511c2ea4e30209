from django.urls import path

from . import views

launch = "teams/<str:team>/launch/"

urlpatterns = [
    path("launch/agent/", views.AgentIdentityView.as_view(), name="launch-agent-identity"),
    path(launch + "jobs/", views.JobListView.as_view(), name="launch-jobs"),
    path(launch + "jobs/<str:name>/versions/", views.JobVersionListView.as_view(), name="launch-job-versions"),
    path(launch + "queues/", views.QueueListView.as_view(), name="launch-queues"),
    path(launch + "queues/<str:name>/items/", views.QueueItemListView.as_view(), name="launch-queue-items"),
    path(launch + "queues/<str:name>/claim/", views.ClaimView.as_view(), name="launch-claim"),
    path(launch + "agents/", views.AgentListView.as_view(), name="launch-agents"),
    path(launch + "items/", views.ItemListView.as_view(), name="launch-items"),
    path(launch + "items/<str:item_id>/", views.ItemDetailView.as_view(), name="launch-item"),
    path(launch + "items/<str:item_id>/cancel/", views.ItemCancelView.as_view(), name="launch-item-cancel"),
    path(launch + "items/<str:item_id>/heartbeat/", views.HeartbeatView.as_view(), name="launch-item-heartbeat"),
]
