from celery import shared_task

from . import services


@shared_task(name="launch.tasks.items_expire_leases")
def items_expire_leases() -> int:
    return services.items_expire_leases()
