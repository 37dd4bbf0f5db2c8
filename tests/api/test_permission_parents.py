"""Permissions on a parent cover its children (hub.permissions + models' permission_parents)."""

from __future__ import annotations

import pytest

from hub import permissions
from sites.models import NfsClient, NfsShare, Node, Space
from tests.factories import NodeFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_view_on_a_site_shows_its_nodes_and_no_other_sites_nodes(member_user):
    mine, other = SiteFactory(), SiteFactory()
    visible, hidden = NodeFactory(site=mine), NodeFactory(site=other)
    permissions.grant("sites.view_site", member_user, mine)
    assert list(permissions.restrict(Node.objects.all(), member_user)) == [visible]
    assert permissions.has_object_perm(member_user, visible, "view")
    assert not permissions.has_object_perm(member_user, hidden, "view")
    # View on the parent does not grant change on the child.
    assert not permissions.has_object_perm(member_user, visible, "change")


def test_many_to_many_parent_does_not_duplicate_rows(member_user):
    first, second = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[first, second])
    SpaceFactory(sites=[SiteFactory()])
    for site in (first, second):
        permissions.grant("sites.view_site", member_user, site)
    assert list(permissions.restrict(Space.objects.all(), member_user)) == [space]


def test_grandparent_grant_reaches_grandchildren(member_user):
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    share = NfsShare.objects.create(space=space, path=space.mountpoint)
    client = NfsClient.objects.create(nfs_share=share, hosts="*")
    permissions.grant("sites.change_site", member_user, site)
    assert list(permissions.restrict(NfsClient.objects.all(), member_user, "change")) == [client]
    assert permissions.has_object_perm(member_user, client, "change")


def test_model_level_permission_on_the_parent_covers_every_child(member_user):
    NodeFactory(), NodeFactory()
    permissions.grant("sites.view_site", member_user)
    member_user = type(member_user).objects.get(pk=member_user.pk)  # drop the permission cache
    assert permissions.restrict(Node.objects.all(), member_user).count() == 2


def test_inactive_user_sees_nothing_even_with_grants(member_user):
    site = SiteFactory()
    node = NodeFactory(site=site)
    permissions.grant("sites.view_site", member_user, site)
    member_user.is_active = False
    assert not permissions.has_object_perm(member_user, node, "view")
    assert not permissions.restrict(Node.objects.all(), member_user).exists()
