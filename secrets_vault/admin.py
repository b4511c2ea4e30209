from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from core.admin import Section, ServiceWriteAdmin, add_url, admin_link, page_section_add
from core.errors import ApplicationError
from core.roles import Role
from core.scoping import scope
from registry.models import Team

from . import services
from .models import Secret

scope(Secret, view=Role.ADMIN)


class SecretForm(forms.ModelForm):
    # Write-only: the widget never renders a value back, not even masked.
    value = forms.CharField(widget=forms.PasswordInput(render_value=False), strip=False)

    class Meta:
        model = Secret
        fields = ["team", "name"]

    generate = forms.BooleanField(
        required=False,
        label="Generate a signing secret",
        help_text="Instead of a value: a random whsec_ secret (Standard Webhooks' form), shown once after saving.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        value = self.fields["value"]
        value.required = False
        if self.instance.pk:
            value.help_text = "Write-only: the current value is never shown. Leave blank to keep it."
        else:
            value.help_text = "Write-only: stored encrypted, and never shown again, here or anywhere."

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk:
            return data
        if data.get("value") and data.get("generate"):
            self.add_error("value", "Give either a value or tick Generate, not both.")
        elif not data.get("value") and not data.get("generate"):
            self.add_error("value", forms.Field.default_error_messages["required"])
        return data

    def _post_clean(self) -> None:
        """No model validation: the vault's services check the name and value (and never quote the value)."""


@admin.register(Secret)
class SecretAdmin(ServiceWriteAdmin):
    """Team secrets through the vault's services: created with a value, given a new value or deleted; never shown.
    A secret still used by a webhook or payload cannot be deleted."""

    add_parent = "team"
    form = SecretForm
    list_display = ["name", "team", "updated_at", "updated_by"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team", "updated_by"]
    readonly_fields = ["created_at", "updated_at", "created_by", "updated_by"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["team", "name", "value", "generate"]
        return ["team", "name", "value", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        # Renaming would silently break payloads and webhooks that refer to the name.
        return [*self.readonly_fields, "team", "name"] if obj else []

    def service_save(self, request, form, change: bool) -> Secret:
        value = form.cleaned_data.get("value")
        if change:
            secret = Secret.objects.select_related("team").get(pk=form.instance.pk)
            return services.secret_update(secret=secret, value=value, user=request.user) if value else secret
        data = form.cleaned_data
        if data.get("generate"):
            secret, generated = services.secret_generate(
                team=data["team"], name=data["name"], kind="whsec", user=request.user
            )
            secret.generated_value = generated  # in memory only, for the page answering this request
            return secret
        return services.secret_create(team=data["team"], name=data["name"], value=value, user=request.user)

    def response_add(self, request, obj: Secret, post_url_continue=None):
        """A generated value is shown on the page answering its creation, and nowhere else (no message, which
        would keep it in a cookie or the session)."""
        value = getattr(obj, "generated_value", None)
        if value is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Secret {obj.name} generated",
            "opts": self.opts,
            "secret": obj,
            "value": value,
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/secrets_vault/secret/generated.html", context)
        add_never_cache_headers(response)
        return response

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect(request.path.rsplit("delete/", 1)[0])

    def delete_model(self, request, obj):
        services.secret_delete(team=obj.team, name=obj.name)

    def delete_queryset(self, request, queryset):
        for secret in queryset.select_related("team"):
            try:
                services.secret_delete(team=secret.team, name=secret.name)
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)


class TeamSecrets(Section):
    """The team page's secrets: names and who changed them last; values never leave the vault."""

    model = Secret
    fields = ["secret", "updated_at", "updated_by"]
    readonly_fields = fields
    verbose_name_plural = "team secrets"
    section_add_label = "New secret"
    section_help = "Referenced as ${NAME} in payloads, and as a webhook's signing secret or access token."
    show_change_link = False

    @admin.display(description="name")
    def secret(self, obj: Secret) -> str:
        return admin_link(obj, obj.name)

    def section_add(self, request, parent) -> str | None:
        return add_url(Secret, request, parent.pk, team=parent.pk)


# A section on the team page: registry does not depend on secrets_vault, so it is added from here.
page_section_add(Team, TeamSecrets, order=10)
