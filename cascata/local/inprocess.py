"""In-process clients of the embedded emulator: the functions' own calls, without HTTP.

A function's boto3 client, pointed at the embedded emulator, spends most of each call on the
way there and back: botocore's request pipeline, a TCP round trip, moto's URL router and moto's
generic response serializer. `InProcessClient` keeps the part that decides what the call does
and drops the rest:

- the request is checked against the service model by botocore's own `ParamValidator`, so a
  parameter Lambda's boto3 would refuse is refused here too (`ParamValidationError`);
- it is handed to the same moto response handler the HTTP endpoint dispatches to, with the
  parameters as moto's request parser produces them, under the emulator's request lock (every
  request, in-process or HTTP, is atomic, as a conditional write on DynamoDB is);
- the answer comes back in boto3's shape (blobs as bytes, timestamps as datetimes) and errors
  as the client's own modeled exceptions (`ConditionalCheckFailedException`, ...), carrying the
  code and message the HTTP path would carry.

Only the operations on the functions' hot path are served this way (`FAST_OPERATIONS`);
anything else (paginators, waiters, S3, SNS) goes to a regular boto3 client on the emulator's
endpoint, which reads and writes the same state. The boto3 adapters themselves are unchanged,
and `tests/local/test_inprocess.py` checks every fast operation against the HTTP path.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from typing import Any, Final

FAST_OPERATIONS: Final[Mapping[str, frozenset[str]]] = {
    "dynamodb": frozenset({
        "PutItem", "GetItem", "DeleteItem", "UpdateItem", "BatchGetItem", "BatchWriteItem",
        "Query", "Scan", "TransactWriteItems", "TransactGetItems",
    }),
    "kinesis": frozenset({
        "PutRecord", "PutRecords", "GetShardIterator", "GetRecords", "ListShards",
        "DescribeStreamSummary",
    }),
    "s3": frozenset({"PutObject", "GetObject"}),
    "sns": frozenset({"Publish"}),
}
"""Per service, the operations answered in-process; every other one goes over HTTP."""

_PASSTHROUGH: Final = {
    ("dynamodb", name) for name in FAST_OPERATIONS["dynamodb"]
} | {("kinesis", "PutRecord"), ("kinesis", "PutRecords")}
"""Answers moto builds in boto3's own shape, but for DynamoDB blobs (decoded here): returned
as built. Every other answer goes through moto's serializer and botocore's parser."""

REQUEST_LOCK = threading.RLock()
"""Held for the whole of each emulator request, in-process or over HTTP."""

Call = tuple[str, str, dict[str, Any]]
"""(service, client method, parameters) of one in-process request."""
_recording: list[Call] | None = None
_recording_lock = threading.Lock()


@contextlib.contextmanager
def record_calls() -> Iterator[list[Call]]:
    """Keep every in-process request made meanwhile, in order (a benchmark replays them
    against a fresh emulator to measure the emulator's own share of a run)."""
    global _recording
    calls: list[Call] = []
    with _recording_lock:
        if _recording is not None:
            raise RuntimeError("in-process calls are already being recorded")
        _recording = calls
    try:
        yield calls
    finally:
        with _recording_lock:
            _recording = None


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class InProcessClient:
    """A boto3 client look-alike for one service of the embedded emulator.

    `http` is a regular boto3 client on the emulator's endpoint: the fallback for every
    operation not answered in-process, and the source of `meta` and `exceptions`.
    """

    def __init__(self, service: str, http: Any, *, account: str, region: str,
                 recorded: bool = True) -> None:
        from botocore.validate import ParamValidator

        self._recorded = recorded
        self._service = service
        self._http = http
        self._account = account
        self._region = region
        self.meta = http.meta
        self.exceptions = http.exceptions
        model = http.meta.service_model
        self._fast = {
            _snake(name): model.operation_model(name)
            for name in FAST_OPERATIONS.get(service, frozenset())
        }
        self._validator = ParamValidator()
        self._handler_class = _handler_class(service)

    def __repr__(self) -> str:
        return f"InProcessClient({self._service!r})"

    def __getattr__(self, name: str) -> Any:
        operation = self.__dict__.get("_fast", {}).get(name)
        if operation is None:
            return getattr(self._http, name)
        return functools.partial(self._call, operation, name)

    def can_paginate(self, name: str) -> bool:
        return bool(self._http.can_paginate(name))

    def get_paginator(self, name: str) -> Any:
        """botocore's own paginator, over the in-process operation where there is one."""
        operation = self._fast.get(name)
        if operation is None or not self._http.can_paginate(name):
            # served over HTTP: its own paginator
            return self._http.get_paginator(name)
        from botocore.paginate import Paginator

        config = _paginator_model(self._service).get_paginator(operation.name)
        return Paginator(getattr(self, name), config, operation)

    def _call(self, operation: Any, method: str, **params: Any) -> Any:
        from botocore.exceptions import ParamValidationError

        report = self._validator.validate(params, operation.input_shape)
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())
        recording = _recording if self._recorded else None
        if recording is not None:
            with _recording_lock:
                recording.append((self._service, method, _copy(params)))
        if self._service == "s3":
            return self._s3(operation, method, params)
        handler = self._handler_class()
        handler.current_account = self._account
        handler.region = self._region
        handler.headers = {}
        handler.response_headers = {}
        handler.querystring = {}
        handler.uri_match = None
        handler._get_action = lambda: operation.name
        if handler.automated_parameter_parsing:
            parsed = _copy(params)
            handler.params = parsed
            handler.body = parsed
        else:
            handler.body = json.dumps(params, default=_blob_to_json)
        with REQUEST_LOCK:
            result, error = _run(handler, method)
        if error is not None:
            status, body = error
            raise self._error(operation, status, body)
        return self._response(operation, handler, result)

    def _response(self, operation: Any, handler: Any, result: Any) -> Any:
        from moto.core.responses import ActionResult

        payload: Any
        if isinstance(result, ActionResult):
            payload = result.result
            if payload is None:
                payload = {}
            if (self._service, operation.name) in _PASSTHROUGH:
                # What botocore's parser would keep: the members of the output shape.
                members = operation.output_shape.members
                response = _blobs_to_bytes({k: v for k, v in payload.items() if k in members})
                assert isinstance(response, dict)
                response["ResponseMetadata"] = dict(_METADATA)
                return response
            _, _, body = handler.serialized(result)
        elif isinstance(result, str | bytes):
            body = result
        else:  # (status, headers, body) or (body, headers), as moto's older handlers return
            body = result[-1] if len(result) == 3 else result[0]
        return _parse(operation, _as_bytes(body), 200)

    def _s3(self, operation: Any, method: str, params: dict[str, Any]) -> Any:
        """S3 objects straight on moto's backend: a body, a content type, nothing else (any
        other parameter, such as encryption or metadata, goes over HTTP to be exact)."""
        from moto.s3.exceptions import S3ClientError
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        plain = {"Bucket", "Key", "Body", "ContentType", "ContentEncoding"}
        if set(params) - plain:
            return getattr(self._http, method)(**params)
        # moto keeps S3 per partition (bucket names are unique within one), as AWS does.
        backend = s3_backends[self._account][get_partition(self._region)]
        try:
            with REQUEST_LOCK:
                if operation.name == "PutObject":
                    body = params.get("Body", b"")
                    value = _as_bytes(body if isinstance(body, str | bytes | bytearray)
                                      else body.read())
                    written = backend.put_object(params["Bucket"], params["Key"], value)
                    written.set_metadata({header: params[name] for name, header in _S3_HEADERS
                                      if params.get(name)})
                    return {"ETag": written.etag, "ResponseMetadata": dict(_METADATA)}
                key = backend.get_object(params["Bucket"], params["Key"])
                if key is None:
                    missing = {"Error": {"Code": "NoSuchKey", "Key": params["Key"],
                                         "Message": "The specified key does not exist."}}
                    raise self.exceptions.from_code("NoSuchKey")(missing, operation.name)
                data = key.value
                response = {"Body": _Body(data), "ContentLength": len(data), "ETag": key.etag,
                            "ContentType": "binary/octet-stream",
                            "LastModified": key.last_modified.replace(microsecond=0,
                                                                      tzinfo=UTC),
                            "ResponseMetadata": dict(_METADATA)}
                response.update({name: key.metadata[header] for name, header in _S3_HEADERS
                                 if key.metadata.get(header)})
                response["Metadata"] = {
                    name[len(_USER_METADATA):]: value for name, value in key.metadata.items()
                    if name.lower().startswith(_USER_METADATA)}
                return response
        except S3ClientError as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            error = {"Error": {"Code": code, "Message": getattr(exc, "message", str(exc))}}
            raise self.exceptions.from_code(code)(error, operation.name) from None

    def _error(self, operation: Any, status: int, body: bytes) -> Exception:
        from botocore.exceptions import ClientError

        parsed = _parse(operation, body, status, headers=_error_headers(body))
        code = parsed.get("Error", {}).get("Code", "")
        error_class: Callable[..., Exception] = ClientError
        if code:
            error_class = self.exceptions.from_code(code)
        return error_class(parsed, operation.name)


_USER_METADATA: Final = "x-amz-meta-"
_S3_HEADERS: Final = (("ContentType", "Content-Type"), ("ContentEncoding", "Content-Encoding"))


class _Body:
    """`GetObject`'s `Body`: read once, or in parts, as botocore's StreamingBody is."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def read(self, amt: int | None = None) -> bytes:
        end = len(self._data) if amt is None else min(len(self._data), self._offset + amt)
        chunk = self._data[self._offset:end]
        self._offset = end
        return chunk

    def close(self) -> None:
        self._offset = len(self._data)


_METADATA: Final = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}


def _run(handler: Any, method_name: str) -> tuple[Any, tuple[int, bytes] | None]:
    """Run one moto action as its HTTP dispatcher would: a result, or (status, error body)."""
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from werkzeug.exceptions import HTTPException

    try:
        return getattr(handler, method_name)(), None
    except ServiceException as exc:
        status, _, body = handler.serialized(ActionResult(exc))
        return None, (int(status), _as_bytes(body))
    except HTTPException as exc:
        body = exc.description or exc.get_body()
        return None, (int(exc.code or 500), _as_bytes(body))


def _as_bytes(text: str | bytes | bytearray) -> bytes:
    return text.encode() if isinstance(text, str) else bytes(text)


def _parse(operation: Any, body: bytes, status: int, headers: Mapping[str, str] | None = None
           ) -> Any:
    parser = _parsers(operation.service_model.protocol)
    response = {"body": body, "headers": dict(headers or {}), "status_code": status}
    parsed = parser.parse(response, operation.output_shape)
    parsed.setdefault("ResponseMetadata", {}).setdefault("RetryAttempts", 0)
    return parsed


@functools.cache
def _paginator_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_paginator_model(service)


@functools.cache
def _parsers(protocol: str) -> Any:
    from botocore.parsers import create_parser

    return create_parser(protocol)


def _error_headers(body: bytes) -> dict[str, str]:
    """moto's JSON errors name their type in the body (`__type`); botocore also reads the
    `x-amzn-errortype` header, which HTTP would carry: give it the same."""
    try:
        kind = json.loads(body or b"{}").get("__type", "")
    except ValueError:
        return {}
    return {"x-amzn-errortype": kind.rsplit("#", 1)[-1]} if kind else {}


@functools.cache
def _handler_class(service: str) -> Any:
    if service == "dynamodb":
        from moto.dynamodb.responses import DynamoHandler

        return DynamoHandler
    if service == "kinesis":
        from moto.kinesis.responses import KinesisResponse

        return KinesisResponse
    if service == "sns":
        from moto.sns.responses import SNSResponse

        return SNSResponse
    return None


def _copy(value: Any) -> Any:
    """A structural copy of request parameters: moto may keep or change what it is given."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def dynamodb_json(result: Any) -> str:
    """A DynamoDB answer as its JSON body (blobs base64, as on the wire)."""
    return json.dumps(result, default=_blob_to_json)


def _blob_to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _blobs_to_bytes(value: Any) -> Any:
    """DynamoDB attribute values as boto3 returns them: `B` and `BS` decoded to bytes, in
    place (moto builds every answer afresh); strings, numbers and the rest are left as they
    are, without copying."""
    if isinstance(value, dict):
        if len(value) == 1:
            kind, item = next(iter(value.items()))
            if kind == "B" and isinstance(item, str):
                value["B"] = base64.b64decode(item)
                return value
            if kind == "BS" and isinstance(item, list):
                value["BS"] = [base64.b64decode(v) if isinstance(v, str) else v for v in item]
                return value
            if kind in _SCALARS and not isinstance(item, dict):
                return value  # a scalar or a set of strings or numbers: nothing to decode
        for key, item in value.items():
            if isinstance(item, dict | list):
                value[key] = _blobs_to_bytes(item)
        return value
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                value[index] = _blobs_to_bytes(item)
    return value


_SCALARS: Final = frozenset({"S", "N", "BOOL", "NULL", "SS", "NS"})


class InProcessClients:
    """`client(service)` for functions on the embedded emulator: in-process where served,
    otherwise the HTTP client from `http_client`. `recorded=False`: never kept by
    `record_calls` (the runtime's own reads, not a function's requests)."""

    def __init__(self, http_client: Callable[[str], Any], *, account: str, region: str,
                 recorded: bool = True) -> None:
        self._http_client = http_client
        self._account = account
        self._region = region
        self._recorded = recorded
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                http = self._http_client(service)
                self._clients[service] = (
                    InProcessClient(service, http, account=self._account, region=self._region,
                                    recorded=self._recorded)
                    if service in FAST_OPERATIONS else http
                )
            return self._clients[service]
