"""Thin receivers: a saved link or alias records its event in the same transaction."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from . import outbox
from .models import Alias, ModelVersion


@receiver(post_save, sender=ModelVersion, dispatch_uid="registry.model_version_linked")
def model_version_linked(sender, instance: ModelVersion, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        outbox.event_record_link(model_version=instance)


@receiver(post_save, sender=Alias, dispatch_uid="registry.alias_added")
def alias_added(sender, instance: Alias, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        outbox.event_record_alias(alias=instance)
