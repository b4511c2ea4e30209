"""/metrics for Prometheus: the counters every process of this machine wrote (prometheus_client's multi-process
mode, see PROMETHEUS_MULTIPROC_DIR in the settings), and gauges read from the database as each scrape asks.

Only clients from METRICS_ALLOWED_NETWORKS, with METRICS_TOKEN when one is set, get them: 403 for another
address, 401 for a missing or wrong token.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.addresses import client_address


class DatabaseCollector(Collector):
    """Gauges of the work waiting in the database, one cheap indexed query each, read at scrape time (so they are
    right whichever process changed the rows, and cost nothing between scrapes)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from automations.choices import CLAIMABLE
        from automations.models import Delivery, Destination
        from launch.choices import ItemState
        from launch.models import Agent, RunQueueItem
        from registry.models import Event

        now = timezone.now()

        def age(moment) -> float:
            return max(0.0, (now - moment).total_seconds()) if moment is not None else 0.0

        due = Delivery.objects.filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now), status__in=CLAIMABLE
        )
        oldest_due = due.aggregate(at=Min(Coalesce("next_attempt_at", "created_at")))["at"]
        yield GaugeMetricFamily(
            "registry_delivery_oldest_due_age_seconds",
            "Seconds the longest-waiting due delivery (pending or retrying) has been due; 0 when none is.",
            value=age(oldest_due),
        )
        oldest_event = Event.objects.filter(dispatched_at__isnull=True).aggregate(at=Min("created_at"))["at"]
        yield GaugeMetricFamily(
            "registry_event_oldest_undispatched_age_seconds",
            "Seconds since the oldest event not yet dispatched was written; 0 when every event is dispatched.",
            value=age(oldest_event),
        )
        yield GaugeMetricFamily(
            "registry_destination_breakers_open",
            "Destinations (scheme://host:port) whose circuit breaker is open: their deliveries wait.",
            value=Destination.objects.filter(open_until__gt=now).count(),
        )
        items = GaugeMetricFamily(
            "registry_launch_items", "Launch queue items by state (finished ones included).", labels=["state"]
        )
        by_state = dict(
            RunQueueItem.objects.order_by().values("state").annotate(n=Count("pk")).values_list("state", "n")
        )
        for state in ItemState.values:
            items.add_metric([state], by_state.get(state, 0))
        yield items
        lease = timedelta(seconds=settings.LAUNCH_LEASE_SECONDS)
        yield GaugeMetricFamily(
            "registry_launch_agents_online",
            "Enabled launch agents seen (claim or heartbeat) within the lease (LAUNCH_LEASE_SECONDS).",
            value=Agent.objects.filter(disabled=False, last_seen_at__gte=now - lease).count(),
        )


def registry() -> CollectorRegistry:
    """A registry for one scrape: every process's files, and the database's gauges."""
    scrape = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(scrape, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    scrape.register(DatabaseCollector())
    return scrape


@cache
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def access_refused(request: HttpRequest) -> HttpResponse | None:
    """The answer refusing this request, or None when it may read the metrics."""
    token = settings.METRICS_TOKEN
    networks = _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    if not token and not networks:
        return HttpResponse("Metrics are turned off: set METRICS_ALLOWED_NETWORKS or METRICS_TOKEN.\n", status=403)
    if networks:
        try:
            # Behind a proxy on this machine the connection is the proxy's, from loopback: ask who it came from.
            address = ipaddress.ip_address(client_address(request))
        except ValueError:
            address = None
        if address is None or not any(address in network for network in networks):
            return HttpResponse("Forbidden.\n", status=403)
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            refused = HttpResponse("A valid bearer token is required.\n", status=401)
            refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return refused
    return None


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = access_refused(request)
    if refused is not None:
        return refused
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
