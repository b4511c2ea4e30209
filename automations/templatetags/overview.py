"""``{% admin_overview %}``: the team admin's overview on the admin index, drawn without JavaScript.

The data comes from ``automations.overview``; this turns it into what the template draws (bar geometry, legend),
so the template stays free of arithmetic and the data stays free of pixels.
"""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.urls import reverse
from django.utils.http import urlencode

from ..admin import STATUS_COLOURS
from ..choices import DeliveryStatus
from ..overview import STATUS_ORDER, overview_for

register = template.Library()

# The chart's own coordinates (viewBox); the SVG is stretched to the module's width by CSS.
BAR_WIDTH = 10
BAR_GAP = 2
CHART_HEIGHT = 60


@register.inclusion_tag("admin/overview.html", takes_context=True)
def admin_overview(context) -> dict:
    request = context.get("request")
    overview = overview_for(request.user) if request is not None else None
    if overview is None:
        return {"overview": None}
    deliveries = overview["deliveries"]
    return {"overview": overview, "chart": _chart(deliveries["hours"]), "legend": _legend(deliveries["totals"])}


def _chart(hours: list[dict]) -> dict:
    """One stacked bar per hour, scaled to the busiest hour; segments bottom-up in ``STATUS_ORDER``."""
    peak = max((sum(hour["counts"].values()) for hour in hours), default=0) or 1
    bars = []
    for index, hour in enumerate(hours):
        top = CHART_HEIGHT
        segments = []
        for status in STATUS_ORDER:
            count = hour["counts"][status]
            if not count:
                continue
            height = count * CHART_HEIGHT / peak
            top -= height
            segments.append(
                {"status": status, "count": count, "colour": STATUS_COLOURS[status], "y": top, "height": height}
            )
        bars.append(
            {
                "start": hour["start"],
                "end": hour["start"] + timedelta(hours=1),
                "x": index * (BAR_WIDTH + BAR_GAP),
                "total": sum(hour["counts"].values()),
                "segments": segments,
            }
        )
    return {
        "bars": bars,
        "width": len(hours) * (BAR_WIDTH + BAR_GAP) - BAR_GAP,
        "height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "peak": peak,
    }


def _legend(totals: dict) -> list[dict]:
    deliveries_url = reverse("admin:automations_delivery_changelist")
    return [
        {
            "status": status,
            "label": DeliveryStatus(status).label,
            "colour": STATUS_COLOURS[status],
            "count": totals[status],
            "url": f"{deliveries_url}?{urlencode({'status__exact': status})}",
        }
        for status in STATUS_ORDER
    ]
