"""A small OTLP/gRPC collector endpoint: receives traces and metrics, keeps the exact payloads.

For tests and benchmarks: a real `opentelemetry.proto.collector` TraceService
and MetricsService on a grpc.aio server on a loopback port. Every Export
request is kept as the bytes that arrived (to scan what was really sent) and
parsed into flat `ReceivedSpan`s; `keep=False` only counts spans (benchmarks).

    async with OtlpReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}
        ...
        spans = rx.spans()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "ReceivedSpan"]

_TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


@dataclass
class ReceivedSpan:
    """One exported span, flattened (ids as hex)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace_id, span_id)
    status_code: int = 0
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0


class OtlpReceiver:
    """Collector endpoint for OTLP/gRPC traces and metrics."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True) -> None:
        self._bind = f"{host}:{port}"
        self.host = host
        self.port = 0
        self.keep = keep
        self.trace_payloads: list[bytes] = []
        self.metric_payloads: list[bytes] = []
        self.span_count = 0
        self.metric_exports = 0
        self._spans: list[ReceivedSpan] = []
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            _TRACE_METHOD: grpc.unary_unary_rpc_method_handler(
                self._export_traces, response_serializer=_serialize
            ),
            _METRICS_METHOD: grpc.unary_unary_rpc_method_handler(
                self._export_metrics, response_serializer=_serialize
            ),
        }
        server.add_generic_rpc_handlers((_Handlers(handlers),))
        self.port = server.add_insecure_port(self._bind)
        await server.start()
        self._server = server

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None

    async def __aenter__(self) -> OtlpReceiver:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _export_traces(self, payload: bytes, context: Any) -> Any:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                self.span_count += len(ss.spans)
                if not self.keep:
                    continue
                for s in ss.spans:
                    self._spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=_attrs(s.attributes),
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            status_code=s.status.code,
                            status_message=s.status.message,
                            resource=resource,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        if self.keep:
            self.trace_payloads.append(payload)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def _export_metrics(self, payload: bytes, context: Any) -> Any:
        self.metric_exports += 1
        if self.keep:
            self.metric_payloads.append(payload)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        return list(self._spans)

    def metric_names(self) -> set[str]:
        names: set[str] = set()
        for payload in self.metric_payloads:
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(payload)
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    names.update(m.name for m in sm.metrics)
        return names

    def metric_requests(self) -> list[metrics_service_pb2.ExportMetricsServiceRequest]:
        return [metrics_service_pb2.ExportMetricsServiceRequest.FromString(p) for p in self.metric_payloads]


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


class _Handlers(grpc.GenericRpcHandler):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._handlers = handlers

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(handler_call_details.method)
