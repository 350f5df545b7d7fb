// Sends one trace (two spans) and one log to the cairn collector with OpenTelemetry JS,
// then prints the ids it used as JSON. Usage: node send.mjs http://127.0.0.1:PORT
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

const url = process.argv[2];
const resource = resourceFromAttributes({ 'service.name': 'js-shop' });
const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${url}/v1/traces` }))],
});
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor({ exporter: new OTLPLogExporter({ url: `${url}/v1/logs` }) })],
});
const tracer = tracerProvider.getTracer('send');
const logger = loggerProvider.getLogger('send');

const root = tracer.startSpan('GET /cart', {
  kind: SpanKind.SERVER,
  attributes: { user_id: 42, 'cart.items': ['apple', 'pear'] },
});
root.addEvent('cache_miss', { key: 'cart:42' });
const child = tracer.startSpan('load cart', { kind: SpanKind.CLIENT }, trace.setSpan(context.active(), root));
child.setStatus({ code: SpanStatusCode.ERROR, message: 'db timeout' });
logger.emit({
  severityNumber: SeverityNumber.WARN,
  severityText: 'WARN',
  body: 'cart_slow',
  attributes: { user_id: 42 },
  context: trace.setSpan(context.active(), child),
});
child.end();
root.end();
await tracerProvider.forceFlush();
await loggerProvider.forceFlush();
await tracerProvider.shutdown();
await loggerProvider.shutdown();
console.log(JSON.stringify({
  trace_id: root.spanContext().traceId,
  root: root.spanContext().spanId,
  child: child.spanContext().spanId,
}));
