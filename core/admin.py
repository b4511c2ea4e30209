"""The admin's shared base classes: forms that save through a service, read-only pages, sections of related
objects on a parent's page, and the registry of sections other apps add to a page.

Every app's admin builds on these; each model admin still lives in its own app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.options import InlineModelAdmin
from django.db import transaction
from django.db.models import Model
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from . import scoping
from .admin_scope import TeamScopedAdmin, may_add
from .errors import ApplicationError
from .throttling import login_attempt_allow


class LoginForm(AdminAuthenticationForm):
    """The admin's login form, under the same limit as the API's token exchange (``core.throttling``): every
    attempt counts, and one over the limit is refused before the password is even checked."""

    def clean(self) -> dict:
        login_attempt_allow(self.request)
        return super().clean()


admin.site.login_form = LoginForm

# --- Sections other apps add to a page ------------------------------------------------------------------


@dataclass(frozen=True)
class PageSection:
    inline: type[InlineModelAdmin]
    order: int


_PAGE_SECTIONS: dict[type[Model], list[PageSection]] = {}


def page_section_add(model: type[Model], inline: type[InlineModelAdmin], *, order: int) -> None:
    """Show ``inline`` on the admin page of ``model``, a model of another app, after the page's own inlines.

    An app calls this from its ``admin`` module for its sections on pages it does not own (its webhooks on the team
    page, say), so the page's app never imports it. Sections are shown by ``order``, lowest first, whatever order
    the apps are loaded in. Adding the same inline again changes nothing.
    """
    sections = _PAGE_SECTIONS.setdefault(model, [])
    if any(section.inline is inline for section in sections):
        return
    sections.append(PageSection(inline, order))
    sections.sort(key=lambda section: section.order)


def page_sections(model: type[Model]) -> tuple[type[InlineModelAdmin], ...]:
    """The inlines other apps added to the page of ``model``, in their order."""
    return tuple(section.inline for section in _PAGE_SECTIONS.get(model, ()))


# --- Base classes ---------------------------------------------------------------------------------------


class BaseAdmin(admin.ModelAdmin):
    """The base of the project's model admins: its stylesheet (lists that fit a 1280-pixel window), and the
    sections other apps add to the page (``page_section_add``) after its own inlines."""

    class Media:
        css = {"all": ["core/admin.css"]}

    def get_inlines(self, request, obj):
        return (*super().get_inlines(request, obj), *page_sections(self.model))


def back_url(request) -> str | None:
    """The page to return to after a write, from the ``next`` parameter, when it is on this site."""
    back = request.GET.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return None


def form_parent_id(form: forms.ModelForm, name: str) -> int | None:
    """The id of the object a form's choices depend on (its team, its registered model): the one posted, the one in
    the add page's address, or the saved object's."""
    raw = form.data.get(name) if form.is_bound else form.initial.get(name)
    if raw in (None, "") and getattr(form.instance, f"{name}_id", None):
        return getattr(form.instance, f"{name}_id")
    return raw.pk if isinstance(raw, Model) else _as_id(raw)


def _as_id(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class VerbatimJSONField(forms.JSONField):
    """A JSON field shown indented when it comes from the database, and exactly as typed when the page is shown
    again with errors: the user's formatting survives a refusal."""

    class _AsTyped(str):
        pass

    def bound_data(self, data, initial):
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        return self._AsTyped(data)

    def to_python(self, value):
        try:
            return super().to_python(value)
        except (ValueError, RecursionError):  # an integer longer than Python converts, nesting beyond the reader
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid", params={"value": value}
            ) from None

    def prepare_value(self, value):
        if isinstance(value, (self._AsTyped, forms.fields.InvalidJSONInput)):
            return value
        return json.dumps(value, ensure_ascii=False, cls=self.encoder, indent=2)


class ServiceWriteAdmin(TeamScopedAdmin, BaseAdmin):
    """An admin whose add/change form saves through a service.

    ``service_save(request, form, change)`` makes the write and returns the saved object. It runs as the last step
    of form validation, inside the admin view's transaction, so a refusal (``ApplicationError``) is shown as a form
    error rather than a server error. ``save_model`` then has nothing left to do.

    ``add_parent`` names the field an add starts from (``team``, ``registered_model``, ``job``): without it in the
    address, the add page first asks which one, among those the user may add to (or goes straight on when there is
    only one). The form shows it hidden, its choices narrowed like any other. After a write the admin returns to the
    ``next`` page when one is given (the page whose section linked here).
    """

    add_parent: str | None = None
    add_label: str | None = None  # what adding is called ("Link an artifact version"); "Add <model>" by default

    def service_save(self, request, form, change: bool):
        raise NotImplementedError

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None and self.add_parent:
            declared = getattr(getattr(kwargs.get("form", self.form), "Meta", None), "widgets", None) or {}
            kwargs["widgets"] = {**declared, **kwargs.get("widgets", {}), self.add_parent: forms.HiddenInput}
        form_class = super().get_form(request, obj, change=change, **kwargs)
        model_admin = self

        class ServiceForm(form_class):
            def full_clean(self) -> None:
                super().full_clean()
                if not self.is_bound:
                    return
                for name in [name for name in self._errors if name in self.fields and self[name].is_hidden]:
                    # A hidden field's error would not show: say it above the form.
                    for error in self._errors.pop(name):
                        self.add_error(None, f"{self.fields[name].label}: {error}")
                if self._errors:
                    return
                try:
                    with transaction.atomic():
                        self.instance = model_admin.service_save(request, self, change)
                except ApplicationError as exc:
                    self.add_error(exc.field if exc.field in self.fields else None, exc.message)
                else:
                    self.service_saved = True

        return ServiceForm

    def save_model(self, request, obj, form, change) -> None:
        """Saved by ``service_save`` when the form was validated."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Reached on a POST only when the page is shown again with errors (an inline, say): the service's write
        # must not outlive it. This runs inside the admin view's transaction, which is marked for rollback only
        # after the page's own queries (its content type, say): none may run once it is.
        response = super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)
        adminform = context.get("adminform")
        if getattr(getattr(adminform, "form", None), "service_saved", False):
            transaction.set_rollback(True)
        return response

    # --- Starting from a parent -------------------------------------------------------------------------

    def parent_choices(self, request):
        """What an add may start from: the parent objects of teams where the user may add."""
        related = self.model._meta.get_field(self.add_parent).related_model
        return scoping.narrow(related._default_manager.all(), request.user, self._role("add"))

    def _add_label(self) -> str:
        return self.add_label or f"Add {self.opts.verbose_name}"

    def add_title(self, parent) -> str:
        return f"{self._add_label()} for {getattr(parent, 'name', parent)}"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.add_parent or not self.has_add_permission(request):
            return super().add_view(request, form_url, extra_context)
        if request.method == "GET" and not request.GET.get(self.add_parent):
            return self.choose_parent_view(request)
        parent = self.parent_choices(request).filter(pk=_as_id(request.GET.get(self.add_parent))).first()
        context = {
            "show_save_and_add_another": False,
            "show_save_and_continue": self.has_change_permission(request),
            **(extra_context or {}),
        }
        if parent is not None:
            context["title"] = self.add_title(parent)
        return super().add_view(request, form_url, context)

    def choose_parent_view(self, request):
        choices = list(self.parent_choices(request))
        query = request.GET.dict()
        if len(choices) == 1:
            return HttpResponseRedirect(f"{request.path}?{urlencode({**query, self.add_parent: choices[0].pk})}")
        parent_opts = self.model._meta.get_field(self.add_parent).related_model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"{self._add_label()}: choose the {parent_opts.verbose_name}",
            "opts": self.opts,
            "parent_name": parent_opts.verbose_name,
            "choices": [(choice, urlencode({**query, self.add_parent: choice.pk})) for choice in choices],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/core/choose_parent.html", context)

    # --- Where a write returns to -----------------------------------------------------------------------

    def response_add(self, request, obj, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        if "_continue" in request.POST or "_addanother" in request.POST:
            return response
        back = back_url(request)
        return HttpResponseRedirect(back) if back else response

    def response_change(self, request, obj):
        response = super().response_change(request, obj)
        back = back_url(request)
        return HttpResponseRedirect(back) if back and "_continue" not in request.POST else response

    def response_delete(self, request, obj_display, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        back = back_url(request)
        return HttpResponseRedirect(back) if back else response


class AddOnlyAdmin(ServiceWriteAdmin):
    """Added through a service, then only viewed: the add page asks for ``add_fields``; the object's page shows
    ``fields`` and ``inlines``, read-only. Nothing is changed or deleted here."""

    add_fields: tuple[str, ...] = ()

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else self.add_fields

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj is not None else ()

    def get_inlines(self, request, obj):
        return super().get_inlines(request, obj) if obj is not None else ()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AddAndRemoveAdmin(AddOnlyAdmin):
    """Added through a service and removed through one (``delete_model``), never edited: the object's page is
    read-only, with its delete link for whoever may delete. No bulk delete: each removal goes through the service."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return ServiceWriteAdmin.has_delete_permission(self, request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class ReadOnlyAdmin(TeamScopedAdmin, BaseAdmin):
    """Viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class Section(ReadOnlyInline):
    """A read-only list of related objects on a parent's page, with a link to add one that starts from the parent
    (and comes back to it): the framework's change pages stay the one place where each object is edited."""

    template = "admin/core/section.html"
    section_add_label = "Add"
    section_help = ""
    section_empty = "None yet."

    def section_add(self, request, parent) -> str | None:
        """The address of the add page for this parent, or None when the user may not add."""
        return None

    def get_formset(self, request, obj=None, **kwargs):
        # Inline instances are made per request, so what the template reads can live on the instance.
        self.back = request.get_full_path()
        url = self.section_add(request, obj) if obj is not None else None
        self.section_add_url = f"{url}&{urlencode({'next': self.back})}" if url else None
        return super().get_formset(request, obj, **kwargs)


def first_rows_formset(prefix: str) -> type[BaseInlineFormSet]:
    """A section's formset named ``prefix`` (its anchor: ``#files-group``), holding only its first ``rows_shown``
    rows: a page lists the newest hundred runs or the first 500 files, never all of a long history."""

    class FirstRowsFormSet(BaseInlineFormSet):
        rows_shown: int | None = None

        @classmethod
        def get_default_prefix(cls) -> str:
            return prefix

        def get_queryset(self):
            if not hasattr(self, "_shown"):
                rows = super().get_queryset()
                self._shown = rows[: self.rows_shown] if self.rows_shown is not None else rows
            return self._shown

    return FirstRowsFormSet


def add_url(model, request, team_id: int, **params) -> str | None:
    """The admin add page of ``model`` with ``params`` prefilled, if the user may add one to team ``team_id``."""
    opts = model._meta
    if not (request.user.has_perm(f"{opts.app_label}.add_{opts.model_name}") and may_add(request.user, model, team_id)):
        return None
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_add") + "?" + urlencode(params)


def object_url(obj, view: str = "change", **params) -> str:
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])
    return f"{url}?{urlencode(params)}" if params else url


def admin_link(obj, text: str | None = None) -> str:
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', object_url(obj), text if text is not None else str(obj))
