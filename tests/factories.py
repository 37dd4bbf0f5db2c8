"""Factories: each builds one object with explicit dependencies."""

from __future__ import annotations

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from hub.models import ClientKey, GroupDetail
from sites.models import Site

PASSWORD = "Correct-Horse-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*extracted)


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"group{n}")

    detail = factory.RelatedFactory("tests.factories.GroupDetailFactory", factory_related_name="group")


class GroupDetailFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GroupDetail

    description = ""


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    name = factory.Sequence(lambda n: f"site{n}")
    shortcode = factory.Sequence(lambda n: f"s{n}")


def administrators() -> Group:
    return Group.objects.get(name=settings.HUB_ADMINISTRATORS_GROUP)


def client_key(user, name: str = "pipeline", **kwargs) -> tuple[ClientKey, str]:
    return ClientKey.issue(user=user, name=name, **kwargs)
