"""The automation form of the admin, in the order an admin thinks it through (event, action, then name).

Every choice is one of the form's team's own objects; the services still check everything again when saving, so
the form only offers what is valid and shows the services' refusals next to the field they name.
"""

from __future__ import annotations

import json

from django import forms
from django.db.models import Model
from django.utils.html import format_html, format_html_join

from core.admin import VerbatimJSONField, form_parent_id
from launch.models import Job, JobVersion
from registry.choices import REGISTRY_PROJECT
from registry.events import VARIABLES, event_type_get, event_types

from .filters import FIELDS, MAX_FILTER_BYTES, MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_FILTER_PATTERNS, OPERATORS
from .models import Automation
from .presets import PRESETS

TEAM_FIELDS = ("registered_model", "webhook", "destination_project", "queue")
WATCH_FIELDS = ("registered_model", "alias_regex", "project", "collection")


def watch_fields(event_type: str) -> tuple[str, ...]:
    """The fields that say what an automation on ``event_type`` watches, as the form shows them: a registered model
    (and, for events with an alias, an alias filter), or a project and a collection (``EventType.scope``). The form
    sends the services only these, so a value left behind in a hidden field is not held against the automation."""
    try:
        found = event_type_get(event_type)
    except KeyError:  # not an event type: the services say so
        return ("registered_model",)
    if found.scope == "project":
        return ("project", "collection")
    return ("registered_model", "alias_regex") if found.carries("alias") else ("registered_model",)


def filter_help() -> str:
    """What a filter expression may hold, for the form: fields, operators, an example and the limits."""
    return format_html(
        "Optional: only events this JSON object holds for (MongoDB operator form, as W&amp;B stores it), e.g. "
        "<code>{}</code>. Fields: {} (when the event type has them) and <code>artifact_metadata.KEY</code>. "
        "Operators: {}; a plain value means <code>$eq</code>; <code>$regex</code> (RE2) matches anywhere, with "
        "<code>$options</code> <code>i</code>, <code>m</code>, <code>s</code>. At most {} bytes, {} levels, {} values "
        "and {} <code>$regex</code>. Empty: every event.",
        '{"artifact_metadata.accuracy": {"$gte": 0.9}}',
        format_html_join(", ", "<code>{}</code>", ((name,) for name in FIELDS)),
        format_html_join(", ", "<code>{}</code>", ((name,) for name in OPERATORS)),
        MAX_FILTER_BYTES,
        MAX_FILTER_DEPTH,
        MAX_FILTER_NODES,
        MAX_FILTER_PATTERNS,
    )


def variables_help(intro: str) -> str:
    """``intro``, then every payload variable with what it holds, from the event registry's table."""
    rows = format_html_join(
        "", "<li><code>${{{}}}</code>: {}</li>", ((v.name, v.description) for v in VARIABLES.values())
    )
    return format_html(
        '{} <details class="payload-variables"><summary>Variables</summary><ul>{}</ul></details>', intro, rows
    )


def _name(obj) -> str:
    return obj.name


class ChildSelect(forms.Select):
    """Options carry the object they belong to (``data-<parent>``: a version its job, a collection its project),
    so the page can offer only the chosen one's."""

    def __init__(self, *args, parent: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.parent = parent

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"][f"data-{self.parent}"] = str(getattr(instance, f"{self.parent}_id"))
        return option


class AutomationForm(forms.ModelForm):
    preset = forms.ChoiceField(
        required=False,
        choices=[("", "(none)"), *((preset.name, preset.label) for preset in PRESETS.values())],
        help_text="Fills the payload with a ready-made template for that receiver; edit it afterwards.",
    )
    payload = VerbatimJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text=variables_help(
            "A JSON object. String values may use the variables below and the team's secrets as ${SECRET_NAME}."
        ),
    )
    filter = VerbatimJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90, "spellcheck": "false"}),
        help_text=filter_help(),
    )
    job = forms.ModelChoiceField(queryset=Job.objects.none(), required=False)
    job_version = forms.ModelChoiceField(
        queryset=JobVersion.objects.none(), required=False, widget=ChildSelect(parent="job")
    )
    overrides = VerbatimJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 90, "spellcheck": "false"}),
        help_text="Merged over the job version's default config; may use the payload variables, e.g. "
        '{"model": "${artifact_version_string}"}. Secrets are not allowed here.',
    )

    class Meta:
        model = Automation
        fields = [
            "team", "event_type", "registered_model", "alias_regex", "filter", "project", "collection", "action_type",
            "webhook", "preset", "payload", "job", "job_version", "overrides", "destination_project", "queue",
            "throttle_runs", "throttle_window", "name", "description", "enabled",
        ]  # fmt: skip
        widgets = {"team": forms.HiddenInput, "collection": ChildSelect(parent="project")}
        help_texts = {
            "registered_model": "Empty: every registered model of the team.",
            "alias_regex": "Only for alias events: an RE2 regular expression that must match somewhere in the alias "
            "(^prod matches production; ^prod$ only prod). Empty: any alias.",
            "project": "Empty: every project of the team.",
            "collection": "Optional: one artifact collection of the project (empty: all of them).",
            "throttle_runs": "Optional: at most this many runs in any window below; events over it are skipped, and "
            "the history says so. Runs by hand are not counted.",
            "throttle_window": "The window, in seconds (3600: an hour). Set both or neither.",
        }
        labels = {
            "collection": "Artifact collection",
            "throttle_runs": "Most runs",
            "throttle_window": "Window (seconds)",
        }

    class Media:
        js = ["automations/automation_form.js"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        team_id = form_parent_id(self, "team")
        for name in TEAM_FIELDS:
            field = self.fields.get(name)
            if field is not None:
                field.queryset = field.queryset.filter(team_id=team_id)
                field.label_from_instance = _name  # all of one team: the team's name would only repeat
        # The registry project holds registered models, watched through a registered model scope.
        self.fields["project"].queryset = (
            self.fields["project"].queryset.filter(team_id=team_id).exclude(name=REGISTRY_PROJECT).order_by("name")
        )
        self.fields["project"].label_from_instance = _name
        self.fields["collection"].queryset = (
            self.fields["collection"]
            .queryset.filter(project__in=self.fields["project"].queryset)
            .order_by("project__name", "name")
        )
        self.fields["collection"].label_from_instance = _name  # the page offers only the chosen project's
        self.fields["event_type"].widget.attrs["data-watch"] = json.dumps(
            {t.name: watch_fields(t.name) for t in event_types()}
        )
        self.fields["job"].queryset = Job.objects.filter(team_id=team_id).order_by("name")
        self.fields["job"].label_from_instance = _name
        self.fields["job_version"].queryset = (
            JobVersion.objects.filter(job__team_id=team_id).select_related("job").order_by("job__name", "index")
        )
        self.fields["job_version"].label_from_instance = lambda version: version.version
        self.fields["preset"].widget.attrs["data-presets"] = json.dumps(
            {preset.name: preset.payload for preset in PRESETS.values()}
        )
        for name in ("payload", "overrides", "filter"):
            if self.initial.get(name) is None:
                self.initial[name] = {}
        if self.instance.pk and self.instance.job_version_id:
            self.initial.setdefault("job", self.instance.job_version.job_id)

    def clean(self):
        cleaned = super().clean()
        job, version = cleaned.get("job"), cleaned.get("job_version")
        if job and version and version.job_id != job.pk:
            self.add_error("job_version", f"{version.version} is not a version of job {job.name}.")
        return cleaned

    def _post_clean(self) -> None:
        """No model validation here: the services check the automation as a whole and name the field at fault,
        where the model's constraints could only say which constraint failed."""

    def service_arguments(self) -> dict:
        """The cleaned form as the services take it: objects by name, only the chosen action's fields."""
        data = self.cleaned_data
        arguments = {
            name: data.get(name)
            for name in (
                "name", "description", "enabled", "event_type", "action_type", "throttle_runs", "throttle_window"
            )
        }  # fmt: skip
        arguments["filter"] = data.get("filter") if data.get("filter") is not None else {}
        shown = watch_fields(data.get("event_type") or "")
        for name in WATCH_FIELDS:
            value = data.get(name) if name in shown else None
            arguments[name] = value.name if isinstance(value, Model) else value or None
        if data.get("action_type") == "LAUNCH_JOB":
            version = data.get("job_version")
            arguments |= {
                "job": version.job.name if version else (data["job"].name if data.get("job") else None),
                "job_version": version.version if version else None,
                "overrides": data.get("overrides") if data.get("overrides") is not None else {},
                "destination_project": data["destination_project"].name if data.get("destination_project") else None,
                "queue": data["queue"].name if data.get("queue") else None,
                "webhook": None,
                "payload": {},
            }
        else:
            arguments |= {
                "webhook": data["webhook"].pk if data.get("webhook") else None,
                "payload": data.get("payload") if data.get("payload") is not None else {},
                "job": None,
                "job_version": None,
                "overrides": {},
                "destination_project": None,
                "queue": None,
            }
        return arguments
