from django.urls import path

from . import files, views

team = "teams/<str:team>/"
model = team + "registered-models/<str:name>/"
artifact_version = team + "projects/<str:project>/artifacts/<str:collection>/versions/<str:version>/"

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("auth/tokens/", views.ApiTokenListView.as_view(), name="auth-tokens"),
    path("auth/tokens/<int:token_id>/", views.ApiTokenDetailView.as_view(), name="auth-token-detail"),
    path("users/", views.UserCreateView.as_view(), name="users"),
    path("teams/", views.TeamListView.as_view(), name="teams"),
    path(team, views.TeamDetailView.as_view(), name="team"),
    path(team + "members/", views.MemberListView.as_view(), name="members"),
    path(team + "members/<str:username>/", views.MemberDetailView.as_view(), name="member"),
    path(team + "projects/", views.ProjectListView.as_view(), name="projects"),
    path(
        team + "projects/<str:project>/artifacts/<str:collection>/versions/",
        views.ArtifactVersionListView.as_view(),
        name="artifact-versions",
    ),
    path(artifact_version, files.ArtifactVersionView.as_view(), name="artifact-version-detail"),
    path(artifact_version + "commit/", files.ArtifactVersionCommitView.as_view(), name="artifact-version-commit"),
    path(artifact_version + "files/<path:path>", files.ArtifactFileView.as_view(), name="artifact-version-file"),
    path(artifact_version + "tags/", views.ArtifactTagAddView.as_view(), name="artifact-version-tags"),
    path(artifact_version + "tags/<str:tag>/", views.ArtifactTagDetailView.as_view(), name="artifact-version-tag"),
    path(team + "blobs/missing/", files.BlobsMissingView.as_view(), name="blobs-missing"),
    path(team + "blobs/<str:sha256>/", files.BlobView.as_view(), name="blob"),
    path(
        team + "artifact-versions/<uuid:public_id>/", views.ArtifactVersionDetailView.as_view(), name="artifact-version"
    ),
    path(team + "resolve/", views.ReferenceResolveView.as_view(), name="resolve"),
    path(team + "registered-models/", views.RegisteredModelListView.as_view(), name="registered-models"),
    path(model, views.RegisteredModelDetailView.as_view(), name="registered-model"),
    path(model + "versions/", views.ModelVersionListView.as_view(), name="model-versions"),
    path(model + "versions/<str:version>/", views.ModelVersionDetailView.as_view(), name="model-version"),
    path(model + "versions/<str:version>/aliases/", views.AliasAddView.as_view(), name="model-version-aliases"),
    path(model + "aliases/<str:alias>/", views.AliasDetailView.as_view(), name="alias"),
    path(team + "protected-aliases/", views.ProtectedAliasListView.as_view(), name="protected-aliases"),
    path(team + "protected-aliases/<str:name>/", views.ProtectedAliasDetailView.as_view(), name="protected-alias"),
    path(team + "events/", views.EventListView.as_view(), name="events"),
    path(team + "events/<str:event_id>/", views.EventDetailView.as_view(), name="event"),
]
