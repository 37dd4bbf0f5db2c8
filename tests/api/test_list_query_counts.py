"""Every estate list endpoint answers in a number of queries that does not grow with its rows.

Each endpoint is read with a handful of rows and again with 1,000, as an administrator and as a
member whose view comes from an object grant on a parent (the permission-filtering path); the
query counts must be equal. Rows are made with bulk_create so the test stays quick.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hub import permissions
from sites.models import (
    Bucket,
    DataStore,
    ExternalTarget,
    Fileset,
    Filesystem,
    IPAddress,
    NfsClient,
    NfsShare,
    Node,
    Queue,
    Server,
    SettingsTask,
    Site,
    SiteLink,
    SmbShare,
    SnapshotSchedule,
    Space,
    SpaceSite,
    StoragePool,
    Tag,
)
from tests.factories import DataStoreFactory, SiteFactory
from workflows.models import Job, JobStat, JobStatHistory, Task, TaskDependency
from workflows.models.jobs import path_digest
from workflows.states import PathState

pytestmark = [pytest.mark.django_db]

MANY = 1000


class Estate:
    """One site (the member is granted view on it) and one space on it, plus the rows under test."""

    def __init__(self) -> None:
        self.site = SiteFactory(name="countsite", shortcode="cs")
        self.filesystem = Filesystem.objects.create(site=self.site, name="gpfs1", mountpoint="/mmfs1")
        self.space = Space.objects.create(name="countspace", mountpoint="/mmfs1/countspace")
        SpaceSite.objects.create(space=self.space, site=self.site)
        self.bucket = Bucket.objects.create(name="count-bucket", storage_type="s3", access_key_id="AKIA",
                                            secret_access_key="secret")
        self.datastore = DataStoreFactory()
        self.counter = 0

    def next(self) -> int:
        self.counter += 1
        return self.counter


def make_sites(estate: Estate, n: int) -> None:
    Site.objects.bulk_create([Site(name=f"bulk{i}", shortcode=f"b{i}") for i in (estate.next() for _ in range(n))])


def make_nodes(estate: Estate, n: int) -> None:
    queue = Queue.objects.get(site=estate.site, name="default")
    nodes = Node.objects.bulk_create([Node(site=estate.site, name=f"n{estate.next()}") for _ in range(n)])
    Node.queues.through.objects.bulk_create([Node.queues.through(node=node, queue=queue) for node in nodes])


def make_queues(estate: Estate, n: int) -> None:
    Queue.objects.bulk_create([Queue(site=estate.site, name=f"q{estate.next()}") for _ in range(n)])


def make_settingstasks(estate: Estate, n: int) -> None:
    SettingsTask.objects.bulk_create([SettingsTask(site=estate.site, tasktype="inventory") for _ in range(n)])


def make_servers(estate: Estate, n: int) -> None:
    Server.objects.bulk_create([Server(site=estate.site, name=f"srv{estate.next()}") for _ in range(n)])


def make_filesystems(estate: Estate, n: int) -> None:
    Filesystem.objects.bulk_create([
        Filesystem(site=estate.site, name=f"fs{i}", mountpoint=f"/fs{i}") for i in (estate.next() for _ in range(n))
    ])


def make_pools(estate: Estate, n: int) -> None:
    StoragePool.objects.bulk_create([
        StoragePool(site=estate.site, filesystem=estate.filesystem, name=f"p{estate.next()}") for _ in range(n)
    ])


def make_filesets(estate: Estate, n: int) -> None:
    Fileset.objects.bulk_create([
        Fileset(site=estate.site, filesystem=estate.filesystem, name=f"fset{estate.next()}") for _ in range(n)
    ])


def make_datastores(estate: Estate, n: int) -> None:
    DataStore.objects.bulk_create([DataStore(name=f"ds{estate.next()}", type="s3", accesskeyid="k") for _ in range(n)])


def make_ipaddresses(estate: Estate, n: int) -> None:
    IPAddress.objects.bulk_create([
        IPAddress(datastore=estate.datastore, ipaddr=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}")
        for i in (estate.next() for _ in range(n))
    ])


def make_sitelinks(estate: Estate, n: int) -> None:
    SiteLink.objects.bulk_create([
        SiteLink(site=estate.site, datastore=estate.datastore, site_path=f"/mmfs1/l{i}", datastore_path=f"/l{i}")
        for i in (estate.next() for _ in range(n))
    ])


def make_spaces(estate: Estate, n: int) -> None:
    spaces = Space.objects.bulk_create([
        Space(name=f"sp{i}", mountpoint=f"/mmfs1/sp{i}") for i in (estate.next() for _ in range(n))
    ])
    SpaceSite.objects.bulk_create([SpaceSite(space=space, site=estate.site) for space in spaces])
    SnapshotSchedule.objects.bulk_create([
        SnapshotSchedule(space=space, frequency="daily", time="01:00", duration="7d") for space in spaces
    ])


def make_nfsshares(estate: Estate, n: int) -> None:
    shares = NfsShare.objects.bulk_create([
        NfsShare(space=estate.space, name=f"nfs{i}", path=f"/mmfs1/countspace/n{i}")
        for i in (estate.next() for _ in range(n))
    ])
    NfsClient.objects.bulk_create([NfsClient(nfs_share=share, hosts="*") for share in shares])


def make_smbshares(estate: Estate, n: int) -> None:
    SmbShare.objects.bulk_create([
        SmbShare(space=estate.space, name=f"smb{i}", path=f"/mmfs1/countspace/s{i}")
        for i in (estate.next() for _ in range(n))
    ])


def make_buckets(estate: Estate, n: int) -> None:
    Bucket.objects.bulk_create([
        Bucket(name=f"bkt-{estate.next()}", storage_type="s3", access_key_id="AKIA", secret_access_key="s")
        for _ in range(n)
    ])


def make_targets(estate: Estate, n: int) -> None:
    targets = ExternalTarget.objects.bulk_create([
        ExternalTarget(name=f"t{estate.next()}", bucket=estate.bucket, space=estate.space, local_file_regex=".*")
        for _ in range(n)
    ])
    ExternalTarget.available_on_sites.through.objects.bulk_create([
        ExternalTarget.available_on_sites.through(externaltarget=target, site=estate.site) for target in targets
    ])


def make_tags(estate: Estate, n: int) -> None:
    Tag.objects.bulk_create([Tag(name=f"tag{estate.next()}") for _ in range(n)])


def _counted_job(estate: Estate) -> Job:
    """The job whose tasks and paths are counted (on the site the member may view)."""
    return Job.objects.get_or_create(site=estate.site, workflow_name="counts",
                                     defaults={"site_name": estate.site.name, "queue": "default"})[0]


def make_jobs(estate: Estate, n: int) -> None:
    Job.objects.bulk_create([
        Job(site=estate.site, site_name=estate.site.name, workflow_name=f"wf{estate.next() % 5}", queue="default",
            definition={"label": "Counted"}, paths=["/mmfs1/countspace"], paths_text="\n/mmfs1/countspace")
        for _ in range(n)
    ])


def make_tasks(estate: Estate, n: int) -> None:
    job = _counted_job(estate)
    tasks = Task.objects.bulk_create([
        Task(job=job, tasktype="migrate", site=estate.site, site_name=estate.site.name, queue="default")
        for _ in range(n)
    ])
    TaskDependency.objects.bulk_create([
        TaskDependency(parent=parent, child=child) for parent, child in zip(tasks, tasks[1:], strict=False)
    ])


def make_jobstats(estate: Estate, n: int) -> None:
    job = _counted_job(estate)
    paths = [f"/mmfs1/countspace/f{estate.next()}" for _ in range(n)]
    stats = JobStat.objects.bulk_create([
        JobStat(job=job, path=path, path_key=path_digest(path), state=PathState.PROCESSED, size=1) for path in paths
    ])
    JobStatHistory.objects.bulk_create([
        JobStatHistory(jobstat=stat, tasktype="migrate", state=PathState.PROCESSED) for stat in stats
    ])


# (url name, query string, builder); member visibility comes from a grant on the site or space.
ENDPOINTS: list[tuple[str, str, Callable[[Estate, int], None]]] = [
    ("site-list", "", make_sites),
    ("node-list", "", make_nodes),
    ("queue-list", "", make_queues),
    ("settingstask-list", "", make_settingstasks),
    ("server-list", "", make_servers),
    ("filesystem-list", "", make_filesystems),
    ("storagepool-list", "", make_pools),
    ("fileset-list", "site=countsite", make_filesets),
    ("datastore-list", "", make_datastores),
    ("ipaddress-list", "", make_ipaddresses),
    ("sitelink-list", "", make_sitelinks),
    ("space-list", "", make_spaces),
    ("nfsshare-list", "", make_nfsshares),
    ("smbshare-list", "", make_smbshares),
    ("bucket-list", "", make_buckets),
    ("externaltarget-list", "", make_targets),
    ("filestatustype-list", "", lambda estate, n: None),
    ("tag-list", "", make_tags),
    ("job-list", "", make_jobs),
    ("job-list", "search_keyword=countspace&hide_noop=true", make_jobs),
    ("job-stats", "", make_jobs),
    ("task-list", "", make_tasks),
    ("jobstat-list", "history=true", make_jobstats),
]


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(context.captured_queries)


@pytest.mark.parametrize(("name", "query", "builder"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_list_query_count_is_constant_up_to_1000_rows(name, query, builder, admin, member, member_user):
    estate = Estate()
    for perm, obj in (("sites.view_site", estate.site), ("sites.view_space", estate.space),
                      ("sites.view_datastore", estate.datastore)):
        permissions.grant(perm, member_user, obj)
    url = f"{reverse(name)}?page_size=100" + (f"&{query}" if query else "")

    builder(estate, 3)
    for client in (admin, member):  # warm per-process caches (content types) before counting
        client.get(url)
    few = {who: count_queries(client, url) for who, client in (("admin", admin), ("member", member))}
    builder(estate, MANY)
    many = {who: count_queries(client, url) for who, client in (("admin", admin), ("member", member))}
    assert many == few, f"{name}: queries grew with rows ({few} -> {many})"
