"""Filter expressions, and alias filters that match anywhere in the alias (as W&B's do) instead of the whole alias.

Every saved alias filter ``p`` becomes ``\\A(?:p)\\z``: searched anywhere, it matches exactly the aliases ``p``
matched in full, so no automation starts or stops firing. The column grows by the anchors' length so that a filter of
the old 256-character limit still fits. A pattern ending inside a ``\\Q`` quote gets the ``\\E`` that closes it first
(otherwise the quote would swallow the closing anchor). A pattern RE2 does not compile is left as it is: it matched
nothing and still matches nothing, where wrapping it could make it compile (``a)|(b``).

Going back: an anchored filter loses its anchors; any other (written for search semantics) becomes
``(?s:.*)(?:p)(?s:.*)``, which matches in full exactly the aliases ``p`` matches somewhere. If a filter would then be
longer than the old column allows, going back is refused, naming the automations to shorten first.
"""

import re2
from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError

OLD_MAX_LENGTH = 256
ANCHOR_START, ANCHOR_END = "\\A(?:", ")\\z"
ANYTHING_START, ANYTHING_END = "(?s:.*)(?:", ")(?s:.*)"
BATCH = 1000


def _compiles(pattern):
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 1 << 20  # alias_filter.MAX_PATTERN_MEMORY
    options.never_capture = True
    try:
        re2.compile(pattern, options=options)
    except (re2.error, UnicodeEncodeError):
        return False
    return True


def _wrapped(pattern, start, end):
    """``start + pattern + end`` with ``pattern`` a group of its own, or None when it does not compile."""
    for inner in (pattern, pattern + "\\E"):
        if _compiles(start + inner + end):
            return start + inner + end
    return None


def _rewrite(apps, rewrite):
    Automation = apps.get_model("automations", "Automation")
    saved = Automation.objects.exclude(alias_regex="").order_by("pk").only("pk", "alias_regex")
    last = 0
    while batch := list(saved.filter(pk__gt=last)[:BATCH]):
        changed = []
        for automation in batch:
            pattern = rewrite(automation.alias_regex)
            if pattern is not None and pattern != automation.alias_regex:
                automation.alias_regex = pattern
                changed.append(automation)
        Automation.objects.bulk_update(changed, ["alias_regex"])
        last = batch[-1].pk


def anchor(apps, schema_editor):
    def rewrite(pattern):
        if not _compiles(pattern):
            return None
        # Were the wrapped form refused (RE2's memory limit), it would match nothing: never more than before.
        return _wrapped(pattern, ANCHOR_START, ANCHOR_END) or ANCHOR_START + pattern + ANCHOR_END

    _rewrite(apps, rewrite)


def unanchor(apps, schema_editor):
    Automation = apps.get_model("automations", "Automation")
    too_long = []

    def rewrite(pattern):
        inner = pattern[len(ANCHOR_START) : -len(ANCHOR_END)]
        if pattern.startswith(ANCHOR_START) and pattern.endswith(ANCHOR_END) and _compiles(inner):
            return inner
        if not _compiles(pattern):
            return None
        return _wrapped(pattern, ANYTHING_START, ANYTHING_END)

    for pk, team, name, pattern in Automation.objects.exclude(alias_regex="").values_list(
        "pk", "team__name", "name", "alias_regex"
    ):
        rewritten = rewrite(pattern)
        if rewritten is not None and len(rewritten) > OLD_MAX_LENGTH:
            too_long.append(f"{team}/{name} (id {pk})")
    if too_long:
        raise IrreversibleError(
            f"These automations' alias filters would be longer than {OLD_MAX_LENGTH} characters as whole-alias "
            f"patterns: {', '.join(too_long)}. Shorten them (or clear them) first."
        )
    _rewrite(apps, rewrite)


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0006_webhook_alerts"),
    ]

    operations = [
        migrations.AddField(
            model_name="automation",
            name="filter",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="automation",
            name="alias_regex",
            field=models.CharField(blank=True, max_length=266),
        ),
        migrations.RunPython(anchor, unanchor),
    ]
