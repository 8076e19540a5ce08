// Counts requests in a counter metric and reports the running total in a
// response header (x-request-count).
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, Counter } from "@solo-io/proxy-runtime";
import { getMetric } from "./common";

class CountRoot extends RootContext {
  requests: Counter | null = null;

  onConfigure(size: u32): bool {
    this.requests = new Counter("requests");
    return true;
  }

  createContext(context_id: u32): Context {
    return new Count(context_id, this);
  }
}

class Count extends Context {
  root: CountRoot;

  constructor(context_id: u32, root: CountRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let c = this.root.requests;
    if (c != null) c.increment(1);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let c = this.root.requests;
    if (c != null) {
      stream_context.headers.response.add("x-request-count", getMetric(c.metric_id).toString());
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new CountRoot(context_id); }, "count");
