"""The embedded AWS emulator (moto's server, in-process, on 127.0.0.1) or an external endpoint.

`EmbeddedAws` starts moto on an ephemeral loopback port, never 0.0.0.0, and guards cascata's
process against moto's known Kinesis defects before anything is written:

- concurrent writers to one shard compute the same next sequence number and overwrite each
  other: every shard write now happens under one process-wide lock;
- each write scans the whole shard to find the last sequence number, so writes slow down as a
  shard grows: the highest sequence number is now tracked in O(1), and reads index records by
  sequence number instead of scanning;
- after a split or merge, writes still go to the closed parent shard: they now go only to open
  shards.

Two more patches are for speed: every stream write signals `STREAM_WRITES` (idle pollers wake
on it), and DynamoDB's data-plane answers, built by moto in wire shape already, are written as
JSON directly instead of through moto's generic, model-walking serializer.

The patches are applied to moto's classes in this process only; installed files are untouched.
`provision` creates the declared resources through the public AWS APIs and waits for them to
become ACTIVE, so it works the same against any AWS-compatible endpoint (`ExternalAws`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from cascata.aws_env import partition_for, regions, resolve
from cascata.local.esm_model import WriteSignal
from cascata.pipeline import LOCAL_ACCOUNT, LOCAL_REGION, Pipeline, ResourceKind, Table

_PATCH_LOCK = threading.Lock()
_WRITE_LOCK = threading.RLock()
_patched = False


UP_ENDPOINT = "http://127.0.0.1:4566"
"""Where `cascata up` serves the AWS APIs unless told another port."""


class EndpointError(RuntimeError):
    """The AWS endpoint cannot be reached or does not behave like AWS."""


STREAM_WRITES = WriteSignal()
"""Every write to a Kinesis stream of the embedded emulator, from any client."""


def patch_moto() -> None:
    """Make moto's Kinesis safe for concurrent writers and O(1) per write, signal writes
    (`STREAM_WRITES`), and answer DynamoDB's data-plane calls without moto's generic
    serializer. Idempotent."""
    global _patched
    with _PATCH_LOCK:
        if _patched:
            return
        from moto.kinesis import models

        shard_cls: Any = models.Shard
        stream_cls: Any = models.Stream
        original_put: Callable[..., str] = shard_cls.put_record

        def put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
            with _WRITE_LOCK:
                last = getattr(self, "_cascata_max", None)
                if last is None:
                    last = next(reversed(self.records)) if self.records else 0
                sequence = last + 1
                self.records[sequence] = models.Record(
                    partition_key, data, sequence, explicit_hash_key
                )
                self._cascata_max = sequence
                return str(sequence)

        def get_max_sequence_number(self: Any) -> int:
            last = getattr(self, "_cascata_max", None)
            if last is None:
                return next(reversed(self.records)) if self.records else 0
            return int(last)

        def get_min_sequence_number(self: Any) -> int:
            return next(iter(self.records)) if self.records else 0

        def get_records(self: Any, last_sequence_id: str, limit: int | None) -> Any:
            # Sequence numbers are contiguous integers per shard: index instead of scanning.
            after = int(last_sequence_id)
            top = get_max_sequence_number(self)
            stop = top if limit is None else min(top, after + limit)
            results = [self.records[s] for s in range(after + 1, stop + 1) if s in self.records]
            last = results[-1].sequence_number if results else after
            behind = 0
            if results and top in self.records:
                behind = int((self.records[top].created_at - results[-1].created_at) * 1000)
            return results, last, behind

        def get_shard_for_key(
            self: Any, partition_key: str, explicit_hash_key: str | None
        ) -> Any:
            from moto.kinesis.exceptions import InvalidArgumentError
            from moto.moto_api._internal import mock_random  # noqa: F401 - moto import order
            from moto.utilities.utils import md5_hash

            if explicit_hash_key:
                key = int(explicit_hash_key)
                if not 0 <= key < 2**128:
                    raise InvalidArgumentError("explicit_hash_key")
            else:
                key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
            for shard in self.shards.values():
                # AWS hash ranges are inclusive at both ends; closed shards take no writes.
                if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
                    return shard
            return None

        from moto.dynamodb.responses import DynamoHandler

        from cascata.local.inprocess import FAST_OPERATIONS, dynamodb_json

        generic_serialized = DynamoHandler.serialized
        data_operations = FAST_OPERATIONS["dynamodb"]

        def serialized(self: Any, action_result: Any) -> Any:
            # moto's generic serializer walks the service model for every attribute of every
            # item; DynamoDB's data-plane answers are built in wire shape already.
            result = action_result.result
            if isinstance(result, dict) and self._get_action() in data_operations:
                return 200, {"Content-Type": "application/x-amz-json-1.0"}, dynamodb_json(result)
            return generic_serialized(self, action_result)

        DynamoHandler.serialized = serialized  # type: ignore[method-assign]

        # A condition expression is lexed once per distinct text (lexing is a pure function of
        # the text; names and values are resolved afterwards, per request).
        from moto.dynamodb.comparisons import ConditionExpressionParser

        lex = ConditionExpressionParser._lex_condition_expression
        lexed: dict[str, tuple[Any, ...]] = {}

        def lex_once(self: Any) -> Any:
            text = self.condition_expression
            nodes = lexed.get(text)
            if nodes is None:
                nodes = tuple(lex(self))
                if len(lexed) < 4096:
                    lexed[text] = nodes
            return deque(node._replace(children=list(node.children))
                         if isinstance(node.children, list) else node for node in nodes)

        ConditionExpressionParser._lex_condition_expression = lex_once  # type: ignore[method-assign]

        # An item's size (checked on every attribute stored, summed for every item read) was
        # computed by rebuilding each nested map's whole subtree first; the children are typed
        # already, so the same sum is taken over them directly.
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.utilities import bytesize

        scalar_size = DynamoType.size

        def size(self: Any) -> int:
            if self.type == "M":
                return sum(bytesize(k) + v.size() for k, v in self.value.items())
            if self.type == "L":
                return sum(v.size() for v in self.value)
            return scalar_size(self)

        DynamoType.size = size  # type: ignore[method-assign]
        original_backend_put = models.KinesisBackend.put_records
        original_backend_put_one = models.KinesisBackend.put_record

        def backend_put_records(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original_backend_put(self, *args, **kwargs)
            finally:
                STREAM_WRITES.notify()

        def backend_put_record(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original_backend_put_one(self, *args, **kwargs)
            finally:
                STREAM_WRITES.notify()

        models.KinesisBackend.put_records = backend_put_records  # type: ignore[method-assign]
        models.KinesisBackend.put_record = backend_put_record  # type: ignore[method-assign]
        shard_cls.put_record = put_record
        shard_cls.get_max_sequence_number = get_max_sequence_number
        shard_cls.get_min_sequence_number = get_min_sequence_number
        shard_cls.get_records = get_records
        shard_cls._cascata_original_put = original_put
        stream_cls.get_shard_for_key = get_shard_for_key
        _patched = True


@dataclass
class Aws:
    """Where the pipeline runs: an endpoint, a region and an account, plus client creation.

    Every client comes from `session` (the profile's credentials and configuration, see
    `cascata.aws_env`). `endpoint_url` (the embedded emulator's, or `--endpoint-url`) goes to
    every client; without it a client gets botocore's own endpoint (`AWS_ENDPOINT_URL_<SERVICE>`,
    `AWS_ENDPOINT_URL`, the profile's `endpoint_url`), else `default_endpoint` (the local
    `cascata up`, for the commands that work on it by default), else AWS's.
    """

    endpoint_url: str | None
    region: str = LOCAL_REGION
    account: str = LOCAL_ACCOUNT
    embedded: bool = False
    session: Any = field(default=None, repr=False)
    """boto3.Session; None: one of the default profile."""
    default_endpoint: str | None = None
    region_source: str = ""
    """What named `region` (`--region`, `AWS_REGION`, `profile P`...), "" for a default."""
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _credentials: bool | None = field(default=None, repr=False)

    @property
    def partition(self) -> str:
        return partition_for(self.region)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._new_client(service)
            return self._clients[service]

    def _new_client(self, service: str) -> Any:
        from botocore.config import Config

        if self.session is None:
            import boto3

            self.session = boto3.Session()
        config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=3,
            read_timeout=60,
            max_pool_connections=32,
            # An emulator in this process is never redirected by the configuration.
            ignore_configured_endpoint_urls=self.embedded,
        )
        endpoint = self.endpoint_url
        if endpoint is None and self.default_endpoint and not endpoint_configured(
                self.session, service, self.region):
            endpoint = self.default_endpoint
        # An emulator accepts any credentials: never send real ones to the embedded one, and
        # need none for one on this machine.
        local = self.embedded or (
            _loopback(_endpoint_of(self.session, service, self.region, endpoint))
            and not self._has_credentials())
        credentials = _PLACEHOLDER_CREDENTIALS if local else {}
        return self.session.client(service, endpoint_url=endpoint, region_name=self.region,
                                   config=config, **credentials)

    def _has_credentials(self) -> bool:
        if self._credentials is None:
            self._credentials = self.session.get_credentials() is not None
        return self._credentials

    def function_client(self, service: str) -> Any:
        """The client a function running in this process gets: the same as `client` here; the
        embedded emulator answers its hot operations in-process."""
        return self.client(service)

    def reading_client(self, service: str) -> Any:
        """For the runtime's own reads of the state (the demo's checks): in-process on the
        embedded emulator, but never counted as a function's request."""
        return self.client(service)

    def where(self, service: str = "kinesis") -> str:
        """The endpoint `service`'s requests go to."""
        return str(self.client(service).meta.endpoint_url)

    def is_local(self) -> bool:
        """Whether the requests stay on this machine (an emulator on a loopback address)."""
        return self.embedded or _loopback(self.where())

    def in_region(self, region: str, *, source: str = "") -> Aws:
        """The same endpoint, account and profile, in another region."""
        return Aws(endpoint_url=self.endpoint_url, region=region, account=self.account,
                   embedded=self.embedded, session=self.session,
                   default_endpoint=self.default_endpoint, region_source=source)

    def check_reachable(self) -> None:
        """Fail fast, with one sentence, when the endpoint does not answer like AWS."""
        try:
            self.client("kinesis").list_streams(Limit=1)
        except Exception as exc:
            where = self.where() if "kinesis" in self._clients else (
                self.endpoint_url or self.default_endpoint or "the AWS endpoint")
            raise EndpointError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from exc


_PLACEHOLDER_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
"""What an emulator gets instead of real credentials (it accepts any)."""


def _loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _endpoint_of(session: Any, service: str, region: str, endpoint_url: str | None = None,
                 *, configured: bool = True) -> str:
    """The endpoint botocore gives a client of `session` (creating a client sends nothing;
    placeholder credentials spare the credential chain)."""
    from botocore.config import Config

    client = session.client(service, region_name=region, endpoint_url=endpoint_url,
                            config=Config(ignore_configured_endpoint_urls=not configured),
                            **_PLACEHOLDER_CREDENTIALS)
    return str(client.meta.endpoint_url)


def endpoint_configured(session: Any, service: str, region: str) -> bool:
    """Whether the configuration (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the
    profile's `endpoint_url` or `services` section) gives `service` an endpoint of its own:
    botocore's endpoint with the configuration differs from the one without it."""
    return _endpoint_of(session, service, region) != _endpoint_of(
        session, service, region, configured=False)


class EmbeddedAws(Aws):
    """moto's server in this process, on 127.0.0.1 and an ephemeral port.

    moto's state is process-wide, so one embedded emulator is in use per process at a time;
    starting one resets that state.
    """

    def __init__(self, port: int = 0, *, region: str | None = None) -> None:
        """`region`: where the emulator's resources live [default: the region the command line
        and the environment name, `cascata.aws_env`]."""
        source = "the region argument"
        if region is None:
            settings = resolve()
            region, source = settings.region, settings.region_source
        else:
            partition_for(region)
        super().__init__(endpoint_url=None, region=region, embedded=True, region_source=source)
        self._port = port
        self._server: _Server | None = None
        self._in_process: Any = None
        self._readers: Any = None

    def start(self) -> EmbeddedAws:
        from cascata.local.inprocess import InProcessClients

        patch_moto()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if self._port:
            _check_port_free(self._port)
        self._server = _Server(self._port)
        self.endpoint_url = self._server.endpoint_url
        self._in_process = InProcessClients(self.client, account=self.account,
                                            region=self.region)
        self._readers = InProcessClients(self.client, account=self.account,
                                         region=self.region, recorded=False)
        # moto keeps its state in process-wide backends: a new emulator starts empty, so a run
        # never reads what an earlier one in the same process left behind.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def function_client(self, service: str) -> Any:
        """In-process where the emulator serves the operation without HTTP (`inprocess.py`)."""
        if self._in_process is None:
            return self.client(service)
        return self._in_process.client(service)

    def reading_client(self, service: str) -> Any:
        if self._readers is None:
            return self.client(service)
        return self._readers.client(service)

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kinesis_backend(self) -> Any:
        from moto.kinesis.models import kinesis_backends

        return kinesis_backends[self.account][self.region]


class _Server:
    """moto's WSGI application on 127.0.0.1, served by cheroot, one request at a time against
    the state.

    Each request runs under `inprocess.REQUEST_LOCK`, as the in-process calls do, so a
    conditional write is atomic whichever way it arrives. cheroot keeps connections alive (an
    SDK client reuses its connection; moto's own development server closes every one), queues
    up to `BACKLOG` connections and bounds every request body. `LoopbackGuard` refuses
    requests of web pages (another Host or Origin) and strips the CORS headers moto adds."""

    BACKLOG = 128
    MAX_BODY_BYTES = 64 * 1024 * 1024
    """Above any single AWS request the pipeline makes (PutRecords: 5 MiB)."""

    def __init__(self, port: int) -> None:
        from cheroot import wsgi
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from cascata.local.guard import LoopbackGuard
        from cascata.local.inprocess import REQUEST_LOCK

        app = LoopbackGuard(DomainDispatcherApplication(create_backend_app), port=port)

        def atomic(environ: dict[str, Any], start_response: Any) -> Any:
            with REQUEST_LOCK:
                return list(app(environ, start_response))

        self._httpd = wsgi.Server(("127.0.0.1", port), atomic, numthreads=8,
                                  request_queue_size=self.BACKLOG, timeout=60)
        self._httpd.max_request_body_size = self.MAX_BODY_BYTES
        self._httpd.prepare()
        bound = self._httpd.bind_addr[1]
        app.port = bound
        self.endpoint_url = f"http://127.0.0.1:{bound}"
        self._thread = threading.Thread(target=self._httpd.serve, name="cascata-emulator",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.stop()
        self._thread.join(timeout=10)


def _check_port_free(port: int) -> None:
    """moto's server thread dies silently on a busy port; say so before starting it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server binds: connections of a run just stopped (TIME_WAIT) do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise EndpointError(f"127.0.0.1:{port} is not available: {exc.strerror}") from None


def external(endpoint_url: str | None, *, default_endpoint: str | None = None,
             default_region: str | None = LOCAL_REGION) -> Aws:
    """An already-running AWS-compatible endpoint, or AWS itself, in the profile and region
    `cascata.aws_env` resolves: `endpoint_url` for every service when given, else botocore's
    configured endpoints, else `default_endpoint`, else AWS's (see `Aws`)."""
    for url in (endpoint_url, default_endpoint):
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise EndpointError(f"--endpoint-url must be an http(s) URL, got {url!r}")
    settings = resolve(default_region=default_region)
    return Aws(endpoint_url=endpoint_url, region=settings.region, session=settings.session,
               default_endpoint=default_endpoint, region_source=settings.region_source)


def configured_endpoint(service: str = "kinesis") -> str | None:
    """The endpoint the configuration gives `service` (`AWS_ENDPOINT_URL_<SERVICE>`,
    `AWS_ENDPOINT_URL`, the profile's), None when it gives none."""
    settings = resolve()
    if not endpoint_configured(settings.session, service, settings.region):
        return None
    return _endpoint_of(settings.session, service, settings.region)


def find_pipeline(aws: Aws, pipeline: Pipeline, *, stage: str) -> Aws:
    """`aws`, or the same endpoint in the region the pipeline is provisioned in there.

    On an emulator on this machine (a `cascata up`) one region holds the pipeline. When the
    configured region does not, the other regions are looked at: the one holding it is used
    when nothing named a region (the local default is no one's choice), and is an error
    naming both regions when something did. Anywhere else (AWS) `aws` is returned as it is."""
    # A table marks the pipeline whichever broker carries its streams (on Kafka there is no
    # Kinesis stream to find); a pipeline without tables is found by its origin stream.
    origins = [s for s in pipeline.streams if s.origin] or list(pipeline.streams)
    marker = pipeline.tables[0] if pipeline.tables else (origins[0] if origins else None)
    if marker is None or not aws.is_local():
        return aws
    table = marker in pipeline.tables
    what = "table" if table else "stream"
    service = "dynamodb" if table else "kinesis"
    name = pipeline.physical_name(marker.name, stage=stage, account=aws.account,
                                  region=aws.region)
    if _exists(aws, service, name):
        return aws
    where = aws.where()
    found = next((r for r in regions(service)
                  if r != aws.region and _exists(aws.in_region(r), service, name)), None)
    if found is None:
        raise EndpointError(f"no pipeline at {where} in {aws.region} or any other region "
                            f"(no {what} {name}): is `cascata up` running there, with "
                            f"--stage {stage}?")
    if aws.region_source:
        raise EndpointError(f"the pipeline at {where} runs in {found}, not in {aws.region} "
                            f"(from {aws.region_source}): give --region {found}")
    return aws.in_region(found, source=f"the pipeline at {where}")


def origin_stream_missing(aws: Aws, pipeline: Pipeline, *, stage: str) -> str | None:
    """The origin stream's physical name when a local endpoint holds the pipeline but not
    that Kinesis stream (its streams are Kafka topics), else None."""
    origins = [s for s in pipeline.streams if s.origin] or list(pipeline.streams)
    if not origins or not aws.is_local():
        return None
    name = pipeline.physical_name(origins[0].name, stage=stage, account=aws.account,
                                  region=aws.region)
    return None if _exists(aws, "kinesis", name) else name


def _exists(aws: Aws, service: str, name: str) -> bool:
    try:
        if service == "dynamodb":
            aws.client("dynamodb").describe_table(TableName=name)
        else:
            aws.client("kinesis").describe_stream_summary(StreamName=name)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


@dataclass(frozen=True)
class Provisioned:
    """Physical names of everything provisioned, by declared name."""

    names: Mapping[str, str]
    created: tuple[str, ...]


def provision(
    pipeline: Pipeline,
    aws: Aws,
    *,
    stage: str,
    shards: int = 2,
    timeout_s: float = 60.0,
    kinesis_streams: bool = True,
) -> Provisioned:
    """Create every declared stream, table, bucket, queue and topic; wait until ACTIVE.
    `kinesis_streams` False: the streams are Kafka topics, created elsewhere (only their
    names are given).

    Idempotent: what exists already is kept. Names follow the declaration.
    """
    names: dict[str, str] = {}
    created: list[str] = []
    kinesis = aws.client("kinesis")
    for stream in pipeline.streams:
        name = pipeline.physical_name(stream.name, stage=stage, account=aws.account,
                                      region=aws.region)
        names[stream.name] = name
        if kinesis_streams and _create(kinesis.create_stream, StreamName=name,
                                       ShardCount=shards):
            created.append(name)
    ddb = aws.client("dynamodb")
    for table in pipeline.tables:
        name = pipeline.physical_name(table.name, stage=stage, account=aws.account,
                                      region=aws.region)
        names[table.name] = name
        if _create(ddb.create_table, **_table_definition(table, name)):
            created.append(name)
    s3 = aws.client("s3")
    for bucket in pipeline.buckets:
        name = pipeline.physical_name(bucket.name, stage=stage, account=aws.account,
                                      region=aws.region)
        names[bucket.name] = name
        kwargs: dict[str, Any] = {"Bucket": name}
        if aws.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
        # us-east-1 answers 200 to creating a bucket one already owns: ask first.
        if not _bucket_exists(s3, name) and _create(s3.create_bucket, **kwargs):
            created.append(name)
    sqs = aws.client("sqs")
    for queue in pipeline.queues:
        name = pipeline.physical_name(queue.name, stage=stage)
        names[queue.name] = name
        sqs.create_queue(QueueName=name)
    sns = aws.client("sns")
    for topic in pipeline.topics:
        name = pipeline.physical_name(topic.name, stage=stage)
        names[topic.name] = name
        sns.create_topic(Name=name)
    _wait_active(pipeline, aws, names if kinesis_streams else {
        k: v for k, v in names.items() if pipeline.resource(k).kind is not ResourceKind.STREAM
    }, timeout_s=timeout_s)
    return Provisioned(names=names, created=tuple(created))


def _key_schema(partition_key: str, sort_key: str | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": partition_key, "KeyType": "HASH"}]
    if sort_key:
        keys.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return keys


def _table_definition(table: Table, name: str) -> dict[str, Any]:
    """CreateTable arguments for a declared table: string keys, on demand, its indexes."""
    attributes = [table.partition_key, table.sort_key] + [
        key for index in table.indexes for key in (index.partition_key, index.sort_key)
    ]
    definition: dict[str, Any] = {
        "TableName": name,
        "KeySchema": _key_schema(table.partition_key, table.sort_key),
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": "S"} for a in dict.fromkeys(attributes) if a
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": _key_schema(index.partition_key, index.sort_key),
                "Projection": {"ProjectionType": index.projection},
            }
            for index in table.indexes
        ]
    return definition


def _bucket_exists(s3: Any, name: str) -> bool:
    try:
        s3.head_bucket(Bucket=name)
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def _create(call: Callable[..., Any], **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("ResourceInUseException", "BucketAlreadyOwnedByYou",
                    "TableAlreadyExistsException"):
            return False
        raise
    return True


def _wait_active(
    pipeline: Pipeline, aws: Aws, names: Mapping[str, str], *, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    kinesis = aws.client("kinesis")
    ddb = aws.client("dynamodb")
    for declared, physical in names.items():
        kind = pipeline.resource(declared).kind
        while True:
            if kind is ResourceKind.STREAM:
                status = kinesis.describe_stream_summary(StreamName=physical)[
                    "StreamDescriptionSummary"]["StreamStatus"]
            elif kind is ResourceKind.TABLE:
                status = ddb.describe_table(TableName=physical)["Table"]["TableStatus"]
            else:
                break
            if status == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise EndpointError(f"{physical} is still {status} after {timeout_s:.0f} s")
            time.sleep(0.5)
