"""Thin receivers: a saved link records its event in the same transaction. Aliases are written in bulk statements
(``services._aliases_put``, ``services._alias_move``), which record their events themselves."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from . import outbox
from .models import ModelVersion


@receiver(post_save, sender=ModelVersion, dispatch_uid="registry.model_version_linked")
def model_version_linked(sender, instance: ModelVersion, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        outbox.event_record_link(model_version=instance)
