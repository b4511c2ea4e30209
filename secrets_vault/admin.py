from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect

from registry.admin import Section, TeamAdmin, add_url, admin_link
from registry.admin_scope import TeamScopedAdmin
from registry.choices import Role
from registry.errors import ApplicationError
from registry.scoping import scope

from . import services
from .models import Secret

scope(Secret, view=Role.ADMIN)


class SecretForm(forms.ModelForm):
    # Write-only: the widget never renders a value back, not even masked.
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=False,
        required=False,
        help_text="Write-only. Leave empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ["team", "name"]

    def clean(self):
        cleaned = super().clean()
        checks = [("value", lambda: services.value_validate(cleaned.get("value")))]
        if not self.instance.pk:
            checks.append(("name", lambda: services.secret_name_validate(cleaned.get("name"))))
        elif not cleaned.get("value"):
            checks = []  # keep the current value
        for field, check in checks:
            try:
                check()
            except ApplicationError as exc:
                self.add_error(exc.field if exc.field in self.fields else field, exc.message)
        return cleaned


@admin.register(Secret)
class SecretAdmin(TeamScopedAdmin, admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "team", "updated_at", "updated_by"]
    list_filter = ["team"]
    search_fields = ["name", "team__name"]
    list_select_related = ["team", "updated_by"]
    readonly_fields = ["created_at", "updated_at", "created_by", "updated_by"]

    def get_readonly_fields(self, request, obj=None):
        # Renaming would silently break payloads and webhooks that refer to the name.
        return [*self.readonly_fields, "team", "name"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get("value")
        if change:
            if value:
                services.secret_update(secret=obj, value=value, user=request.user)
            return
        obj.pk = services.secret_create(team=obj.team, name=obj.name, value=value, user=request.user).pk

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
        return add_url(Secret, request, team=parent.pk)


# secrets_vault depends on registry, not the other way round: the section joins the team page from here.
TeamAdmin.inlines = (*TeamAdmin.inlines, TeamSecrets)
