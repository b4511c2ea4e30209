from django.core.management.base import BaseCommand

from secrets_vault.services import secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every team secret with the newest key in SECRETS_ENCRYPTION_KEYS. Run it after prepending a "
        "new key; once it finishes, older keys can be removed."
    )

    def handle(self, *args, **options) -> None:
        count = secrets_reencrypt()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) with the newest key."))
