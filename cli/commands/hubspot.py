"""`clay-pipeline hubspot setup`: create the contact properties the router's mapping needs, in the group `clay`.

It reads the portal's property groups and contact properties first and creates only what is missing
(a custom property the mapping names: `clay_icp_score` as a number, `clay_enrichment_date` as a date,
any other as single-line text), so a second run changes nothing. A property that exists is never
changed, even with another type than expected: that is reported. The token is HUBSPOT_ACCESS_TOKEN
from the environment, else from the router's secret (CONFIG_SECRET_ID, or --stack NAME's
DestinationSecretName output), as the router reads it; the mapping is HUBSPOT_PROPERTY_MAP,
HUBSPOT_OWNED_PROPERTIES and HUBSPOT_NEW_CONTACT_VALUES from the environment: the values you deploy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from clay_pipeline.adapters.hubspot import HubSpotContacts, HubSpotError
from clay_pipeline.adapters.webhooks import HttpClient
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.errors import ConfigError
from clay_pipeline.core.hubspot_contacts import ContactMapping, PropertiesPlan
from cli.commands.common import print_json, usage_error
from cli.operations.target import TargetError, stack_secrets, use_region

TIMEOUT_SECONDS = 15.0


def hubspot_command(args: argparse.Namespace) -> int:
    use_region(args.region)
    try:
        if args.stack:
            os.environ["CONFIG_SECRET_ID"] = _config_secret(args.stack)
        if args.secret_id:
            os.environ["CONFIG_SECRET_ID"] = args.secret_id
        mapping = ContactMapping.from_environment(dict(os.environ))
    except (ConfigError, TargetError) as error:
        return usage_error(str(error))
    base_url = (
        args.base_url or os.environ.get("HUBSPOT_BASE_URL") or RouterSettings.model_fields["hubspot_base_url"].default
    )
    hubspot = HubSpotContacts(HttpClient(), base_url, mapping)
    try:
        plan = hubspot.setup_properties(TIMEOUT_SECONDS, apply=not args.dry_run)
    except HubSpotError as error:
        print(f"error: HubSpot at {base_url}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"dry_run": args.dry_run, "changed": plan.changes, **dataclasses.asdict(plan)})
        return 0
    print(_report(plan, args.dry_run))
    return 0


def _config_secret(stack: str) -> str:
    """The router's secret (DestinationSecretName; ConfigSecretName on a stack deployed before the split)."""
    secrets = stack_secrets(stack)
    return secrets.get("DestinationSecret") or secrets["ConfigSecret"]


def _report(plan: PropertiesPlan, dry_run: bool) -> str:
    verb = "would create" if dry_run else "created"
    lines = []
    if plan.group:
        lines.append(f"{verb} property group {plan.group['name']} ({plan.group['label']})")
    lines += [f"{verb} {item['name']} ({item['type']}, group {item['groupName']})" for item in plan.create]
    lines += [
        f"warning: {problem}: the router sends it as text; fix its type in HubSpot" for problem in plan.mismatched
    ]
    if not plan.changes:
        lines.append(f"nothing to change: the {len(plan.present)} contact properties the mapping writes exist")
    elif not dry_run:
        lines.append(
            "If the router paused HubSpot for a missing property it re-checks within 15 minutes;"
            " resume now with: clay-pipeline destination resume hubspot"
        )
    return "\n".join(lines)
