"""Input serializers check shapes and types; output serializers shape responses. Rules live in services."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.roles import Role
from registry.events import artifact_version_uri, event_type_get
from registry.models import Event, Membership, Project, ProtectedAlias, Team

# --- Inputs ---------------------------------------------------------------------------------------------


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=512, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


class ApiTokenSerializer(serializers.Serializer):
    """A token as listed: what identifies it to its owner, never its value or hash."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class UserCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=512, trim_whitespace=False, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, trim_whitespace=False)


class MemberSetSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class ManifestFileSerializer(serializers.Serializer):
    path = serializers.CharField(trim_whitespace=False, help_text="Relative POSIX path, e.g. weights/model.bin")
    size = serializers.IntegerField(help_text="Bytes")
    sha256 = serializers.CharField(trim_whitespace=False, help_text="64 hexadecimal digits")


class ManifestReferenceSerializer(ManifestFileSerializer):
    uri = serializers.CharField(trim_whitespace=False, help_text="s3://, gs:// or https:// URI; never fetched")


class ArtifactVersionCreateSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=64, trim_whitespace=False)
    metadata = serializers.DictField(required=False, default=dict)
    digest = serializers.CharField(required=False, allow_blank=True, default="", max_length=128)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    files = ManifestFileSerializer(many=True, required=False, default=list)
    references = ManifestReferenceSerializer(many=True, required=False, default=list)


class DigestsSerializer(serializers.Serializer):
    sha256 = serializers.ListField(child=serializers.CharField(trim_whitespace=False), max_length=10000)


class RegisteredModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class RegisteredModelUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class LinkSerializer(serializers.Serializer):
    artifact = serializers.CharField(max_length=400, help_text="team/project/collection:vN or ...:alias")
    aliases = serializers.ListField(
        child=serializers.CharField(max_length=64, trim_whitespace=False), required=False, default=list, max_length=50
    )


class AliasAddSerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=64, trim_whitespace=False)


class TagAddSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=64, trim_whitespace=False)


class ProtectedAliasCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, trim_whitespace=False)


# --- Outputs --------------------------------------------------------------------------------------------


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["name", "created_at"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")

    class Meta:
        model = Membership
        fields = ["username", "email", "role", "created_at"]


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["name", "description", "created_at"]


class ArtifactVersionSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    uri = serializers.SerializerMethodField()
    reference = serializers.CharField()
    version = serializers.CharField()
    project = serializers.CharField(source="collection.project.name")
    collection = serializers.CharField(source="collection.name")
    type = serializers.CharField(source="collection.type")
    digest = serializers.CharField()
    metadata = serializers.JSONField()
    description = serializers.CharField()
    state = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    created_at = serializers.DateTimeField()
    committed_at = serializers.DateTimeField()
    tags = serializers.SerializerMethodField()

    def get_uri(self, obj) -> str:
        return artifact_version_uri(obj.public_id)

    def get_tags(self, obj) -> list[str]:
        return tag_names(obj)


def tag_names(artifact_version) -> list[str]:
    return sorted(tag.name for tag in artifact_version.tags.all())


class ManifestFileOutSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.URLField(help_text="Download (GET) once committed; upload (PUT) while pending")


class ManifestReferenceOutSerializer(serializers.Serializer):
    path = serializers.CharField()
    uri = serializers.CharField(source="reference")
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class MissingFileSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    paths = serializers.ListField(child=serializers.CharField())
    upload_url = serializers.URLField(help_text="PUT the file's bytes here")


class ArtifactVersionDetailSerializer(ArtifactVersionSerializer):
    """A version with its manifest. The view puts ``files``, ``references`` and ``missing`` in the context."""

    files = serializers.SerializerMethodField()
    references = serializers.SerializerMethodField()
    missing = serializers.SerializerMethodField(help_text="Pending versions: the files still to upload")

    @extend_schema_field(ManifestFileOutSerializer(many=True))
    def get_files(self, obj) -> list:
        return self.context["files"]

    @extend_schema_field(ManifestReferenceOutSerializer(many=True))
    def get_references(self, obj) -> list:
        return ManifestReferenceOutSerializer(self.context["references"], many=True).data

    @extend_schema_field(MissingFileSerializer(many=True))
    def get_missing(self, obj) -> list:
        return self.context["missing"]


# The registry's most read answers are plain serializers: a ModelSerializer works its fields out from the model
# again for every object it renders, which cost more than the rest of rendering it.


class RegisteredModelSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    description = serializers.CharField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class ModelVersionSerializer(serializers.Serializer):
    registered_model = serializers.CharField(source="registered_model.name")
    version = serializers.CharField()
    artifact = serializers.CharField(source="artifact_version.reference")
    artifact_id = serializers.UUIDField(source="artifact_version.public_id")
    metadata = serializers.JSONField(source="artifact_version.metadata")
    aliases = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField(help_text="The tags of its artifact version")
    linked_by = serializers.CharField(source="linked_by.username", default=None)
    linked_at = serializers.DateTimeField(read_only=True)

    def get_aliases(self, obj) -> list[str]:
        return sorted(a.name for a in obj.aliases.all())

    def get_tags(self, obj) -> list[str]:
        return tag_names(obj.artifact_version)


class EventMarksSerializer(serializers.Serializer):
    """What an event's context and row say besides its columns: the tag of a tag event, and a run by hand."""

    tag = serializers.SerializerMethodField(help_text="The tag added or removed (tag events); else empty")
    manual = serializers.SerializerMethodField(help_text="Recorded to run one automation by hand")

    def get_tag(self, obj) -> str:
        return obj.context.get("tag", "")

    def get_manual(self, obj) -> bool:
        return obj.manual_for is not None


class FiredEventSerializer(EventMarksSerializer):
    """An event a change recorded. What it triggered: ``deliveries/?event=<id>`` and ``launch/items/?event=<id>``."""

    id = serializers.UUIDField()
    type = serializers.CharField(help_text="LINK_ARTIFACT, ADD_ARTIFACT_ALIAS, CREATE_ARTIFACT, ...")
    alias = serializers.CharField(help_text="The alias put on or taken off the version (alias events); else empty")


class FiredEventsSerializer(serializers.Serializer):
    """Adds ``events``: the events the request's change recorded, in order. The view puts them in the context."""

    events = serializers.SerializerMethodField(help_text="The events this change fired, in order; empty if none")

    @extend_schema_field(FiredEventSerializer(many=True))
    def get_events(self, obj) -> list:
        return FiredEventSerializer(self.context["events"], many=True).data


class ModelVersionChangeSerializer(ModelVersionSerializer, FiredEventsSerializer):
    """A model version as a link or an alias left it, with the events that change fired: LINK_ARTIFACT (a link),
    then one ADD_ARTIFACT_ALIAS per alias added."""


class ArtifactVersionChangeSerializer(ArtifactVersionDetailSerializer, FiredEventsSerializer):
    """An artifact version as logging or committing it left it, with CREATE_ARTIFACT if that change committed it."""


class ArtifactVersionTaggedSerializer(ArtifactVersionSerializer, FiredEventsSerializer):
    """An artifact version as a tag change left it, with the ADD_ARTIFACT_TAG or REMOVE_ARTIFACT_TAG it fired."""


class ProtectedAliasSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = ProtectedAlias
        fields = ["name", "created_by", "created_at"]


class EventSerializer(EventMarksSerializer, serializers.ModelSerializer):
    registered_model = serializers.SerializerMethodField()
    artifact = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    author = serializers.SerializerMethodField()
    caused_by = serializers.UUIDField(source="caused_by_id", allow_null=True)
    automation = serializers.IntegerField(
        source="manual_for", allow_null=True, help_text="A manual event's automation; null otherwise"
    )
    variables = serializers.JSONField(source="context")

    class Meta:
        model = Event
        fields = [
            "id",
            "type",
            "registered_model",
            "artifact",
            "version",
            "alias",
            "tag",
            "author",
            "created_at",
            "dispatched_at",
            "caused_by",
            "depth",
            "manual",
            "automation",
            "dispatch_note",
            "variables",
        ]

    # Events outlive renames and deletions: read from the snapshot taken when the change happened.
    def get_registered_model(self, obj) -> str | None:
        if event_type_get(obj.type).scope != "registered_model":
            return None
        return obj.context.get("artifact_collection_name", "")

    def get_artifact(self, obj) -> str:
        """The artifact version as ``team/project/collection:vN`` (for links and aliases, the one linked)."""
        return obj.context.get("source_artifact", "")

    def get_version(self, obj) -> str:
        return obj.context.get("version", "")

    def get_author(self, obj) -> str:
        return obj.context.get("event_author", "")
