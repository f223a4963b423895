"""Deployments that tell customers, gathered by ``deployments/serve.py``: the blast notice (run
by the incident automations, or by hand with an incident number) and the status page, which is
also republished every 10 minutes so the services' states on it stay current."""

from __future__ import annotations

STATUS_PAGE_EVERY_SECONDS = 600


def deployments_for(fleet) -> list:
    from datetime import timedelta

    from prefect.schedules import Interval

    from flows.notices import customer_notice, status_page_publish

    deployments = [
        customer_notice.to_deployment(
            name="customer-notice",
            description="E-mail the customers of an incident's services (run by the incident automations).",
        )
    ]
    schedule = Interval(timedelta(seconds=STATUS_PAGE_EVERY_SECONDS)) if fleet.customer_notices.status_page else None
    deployments.append(
        status_page_publish.to_deployment(
            name="status-page-publish",
            schedule=schedule,
            description="Render the public status page and upload it to the off-site web server.",
        )
    )
    return deployments
