"""Print a site's agent key, for installing its agents (``AGENT_KEY`` in the agent's config).

The key seals the credentials the hub sends in orders; treat it like a password. Ansible's
agent role reads it with this command on the hub host.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print the agent key of a site (the agents of that site need it)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("site", help="site name")

    def handle(self, *args, **options) -> None:
        from sites.models import Site

        site = Site.objects.filter(name=options["site"]).first()
        if site is None:
            raise CommandError(f"No site named {options['site']!r}.")
        self.stdout.write(site.agent_key)
