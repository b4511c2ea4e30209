"""Ready-made payload templates for common receivers, offered when an automation is created.

The JSON shapes are those the receiving services expect (a GitHub ``repository_dispatch`` body, a Microsoft Teams
Adaptive Card for a Workflows webhook or a MessageCard for a retired Office 365 connector, Slack Block Kit blocks);
the values use the variables of ``automations.rendering``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    payload: dict[str, Any]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="github_repository_dispatch",
            label="GitHub repository dispatch",
            description=(
                "Starts a GitHub Actions workflow listening for repository_dispatch of type BUILD_AND_DEPLOY. "
                "POST it to https://api.github.com/repos/OWNER/REPO/dispatches with a token allowed to trigger "
                "workflows as the webhook's access token; the workflow reads github.event.client_payload."
            ),
            payload={
                "event_type": "BUILD_AND_DEPLOY",
                "client_payload": {
                    "event_author": "${event_author}",
                    "artifact_version": "${artifact_version}",
                    "artifact_version_string": "${artifact_version_string}",
                    "artifact_collection_name": "${artifact_collection_name}",
                    "project_name": "${project_name}",
                    "entity_name": "${entity_name}",
                },
            },
        ),
        Preset(
            name="microsoft_teams",
            label="Microsoft Teams notification (Workflows)",
            description=(
                'Posts an Adaptive Card to a Teams channel through a Workflows webhook (the "Post to a channel when '
                'a webhook request is received" template): the version, who made the change and which event it was.'
            ),
            payload={
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": None,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {
                                    "type": "TextBlock",
                                    "size": "Medium",
                                    "weight": "Bolder",
                                    "text": "Model registry: ${event_type}",
                                    "wrap": True,
                                },
                                {
                                    "type": "TextBlock",
                                    "text": "${artifact_version_string} changed in the model registry.",
                                    "wrap": True,
                                },
                                {
                                    "type": "FactSet",
                                    "facts": [
                                        {"title": "Author", "value": "${event_author}"},
                                        {"title": "Event type", "value": "${event_type}"},
                                    ],
                                },
                            ],
                        },
                    }
                ],
            },
        ),
        Preset(
            name="microsoft_teams_messagecard",
            label="Microsoft Teams notification (legacy connector, MessageCard)",
            description=(
                "Posts a MessageCard through an Office 365 connector's Incoming Webhook URL. Microsoft is retiring "
                "these connectors; new channels use the Workflows preset."
            ),
            payload={
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "summary": "Model registry event",
                "sections": [
                    {
                        "activityTitle": "Model registry notification",
                        "text": "${artifact_version_string} changed in the model registry.",
                        "facts": [
                            {"name": "Author", "value": "${event_author}"},
                            {"name": "Event Type", "value": "${event_type}"},
                        ],
                        "markdown": True,
                    }
                ],
            },
        ),
        Preset(
            name="slack",
            label="Slack notification",
            description=(
                "Posts a message to a Slack channel through an incoming webhook: the event, the version and its author."
            ),
            payload={
                "text": "Model registry event: ${event_type}",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": "Registry event: ${event_type}"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "New version: ${artifact_version_string}"}},
                    {"type": "divider"},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "Author: ${event_author}"}},
                ],
            },
        ),
    )
}


def preset_payload(key: str) -> dict[str, Any]:
    """A fresh copy of a preset's payload, so a caller may edit it without changing the preset."""
    try:
        return copy.deepcopy(PRESETS[key].payload)
    except KeyError:
        raise KeyError(f"Unknown preset {key!r}: use one of {', '.join(PRESETS)}.") from None
