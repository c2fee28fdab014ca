"""The four services' slot in the stack.

For now it only reserves their URLs in stack.env and shows them in ``status``: the issue that
adds the services makes ``start`` run them under a supervisor and ``status`` show restarts.
"""

from __future__ import annotations

from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.profiles import HOST, SERVICES

__all__ = ["Services"]

NOT_YET = "not started: the services arrive with their own issue"


class Services:
    """order, payment, inventory, shipping: one HTTP instance each (for now)."""

    name = "services"

    def plan(self, ctx: Context) -> Plan:
        return Plan("none", detail=NOT_YET)

    def start(self, ctx: Context) -> None:
        pass

    def ready(self, ctx: Context) -> None:
        pass

    def env(self, ctx: Context) -> dict[str, str]:
        urls = {service: self._url(ctx, service) for service in SERVICES}
        return {f"SAGAKIT_{service.upper()}_URL": url for service, url in urls.items()} | {
            # Every instance's base URL; two payment instances will give two payment URLs.
            "SAGAKIT_INSTANCE_URLS": ",".join(urls.values()),
        }

    def stop(self, ctx: Context) -> None:
        pass

    def status(self, ctx: Context) -> list[StatusRow]:
        return [
            StatusRow(service, self._url(ctx, service), None, "not part of the stack yet")
            for service in SERVICES
        ]

    def _url(self, ctx: Context, service: str) -> str:
        return f"http://{HOST}:{ctx.profile.service_port(service)}"
