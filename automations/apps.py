from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self) -> None:
        from django.contrib import admin
        from django.core.checks import Tags, register

        from registry.events import event_handler_register
        from secrets_vault.usage import reserved_names_register, usage_finder_register

        from . import checks, dispatch, rendering, selectors

        register(checks.alias_filters_check, Tags.database)
        register(checks.removed_settings_check)
        event_handler_register(dispatch.event_handle)
        usage_finder_register(selectors.secret_users)
        reserved_names_register(
            {name: "it is a payload variable." for name in rendering.VARIABLES if "." not in name}
            | {"artifact_metadata.": "it is a payload variable.", "artifact_metadata": "it is a payload variable."}
        )
        # The default site, with the team admin's overview above the app list (automations/overview.py).
        admin.site.index_template = "admin/registry_index.html"
