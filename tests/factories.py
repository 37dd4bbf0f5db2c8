"""Factories: each builds one object with explicit dependencies."""

from __future__ import annotations

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from hub.models import ClientKey, GroupDetail
from sites.models import (
    DEFAULT_QUEUE,
    Bucket,
    DataStore,
    ExternalTarget,
    Filesystem,
    Node,
    Queue,
    Site,
    Space,
    SpaceSite,
    StoragePool,
)

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
    """A site with its default queue (as ``sites.services.sites.create_site`` makes it)."""

    class Meta:
        model = Site
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"site{n}")
    shortcode = factory.Sequence(lambda n: f"s{n}")

    @factory.post_generation
    def default_queue(self, create, extracted, **kwargs):
        if create:
            Queue.objects.get_or_create(site=self, name=DEFAULT_QUEUE)


class NodeFactory(factory.django.DjangoModelFactory):
    """A node of ``site``; pass ``last_heartbeat`` to make it online or offline."""

    class Meta:
        model = Node
        skip_postgeneration_save = True

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"node{n}.example.org")
    last_heartbeat = None

    @factory.post_generation
    def queues(self, create, extracted, **kwargs):
        if create:
            names = extracted or [DEFAULT_QUEUE]
            self.queues.set([Queue.objects.get_or_create(site=self.site, name=name)[0] for name in names])


class FilesystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Filesystem

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"gpfs{n}")
    mountpoint = factory.LazyAttribute(lambda fs: f"/mmfs/{fs.name}")
    capacity = 10 * 2**40
    used_space = 4 * 2**40
    free_space = 6 * 2**40


class StoragePoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StoragePool

    filesystem = factory.SubFactory(FilesystemFactory)
    site = factory.LazyAttribute(lambda pool: pool.filesystem.site)
    name = factory.Sequence(lambda n: f"pool{n}")
    capacity = 2**40
    used_space = 2**39
    free_space = 2**39


class SpaceFactory(factory.django.DjangoModelFactory):
    """A space; ``sites=[...]`` places it on those sites (ready unless ``ready=False`` is given)."""

    class Meta:
        model = Space
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"space{n}")
    mountpoint = factory.LazyAttribute(lambda space: f"/mmfs1/{space.name}")

    @factory.post_generation
    def sites(self, create, extracted, **kwargs):
        if create and extracted:
            for site in extracted:
                SpaceSite.objects.create(space=self, site=site, ready=kwargs.get("ready", True))


class BucketFactory(factory.django.DjangoModelFactory):
    """An S3 bucket with (fake) credentials; other types: pass ``storage_type`` and its fields."""

    class Meta:
        model = Bucket

    name = factory.Sequence(lambda n: f"bucket-{n}")
    storage_type = Bucket.StorageType.S3
    endpoint = "s3.example.org"
    port = 443
    scheme = "https"
    region = "eu-west-2"
    access_key_id = "AKIAFACTORYKEY000001"
    secret_access_key = "factory-secret/value+0000000000000000000"


class ExternalTargetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExternalTarget
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"target{n}")
    bucket = factory.SubFactory(BucketFactory)
    space = factory.SubFactory(SpaceFactory)
    local_file_regex = ".*"

    @factory.post_generation
    def available_on_sites(self, create, extracted, **kwargs):
        if create and extracted:
            self.available_on_sites.set(extracted)


class DataStoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataStore

    name = factory.Sequence(lambda n: f"datastore{n}")
    type = DataStore.Type.S3
    endpoint = "s3.example.org"
    bucket = "archive"


def administrators() -> Group:
    return Group.objects.get(name=settings.HUB_ADMINISTRATORS_GROUP)


def client_key(user, name: str = "pipeline", **kwargs) -> tuple[ClientKey, str]:
    return ClientKey.issue(user=user, name=name, **kwargs)
