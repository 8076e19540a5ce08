// Reads properties and shared data and reports them as response headers:
// x-prop-path, x-prop-method, x-prop-source, x-prop-plugin, x-prop-root-id,
// x-prop-status (response.code, an int64), x-prop-missing (an unknown path reads
// as NOT_FOUND) and x-shared-hits, a counter kept in shared data with CAS.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
         WasmResultValues } from "@solo-io/proxy-runtime";
import { getProperty, propertyString, propertyInt, getShared, setShared } from "./common";

class PropsRoot extends RootContext {
  // the SDK's own onConfigure corrupts memory (ABI reference, section 9)
  onConfigure(size: u32): bool {
    return true;
  }

  createContext(context_id: u32): Context {
    return new Props(context_id, this);
  }
}

function bumpHits(): string {
  // optimistic concurrency: retry on CAS_MISMATCH
  for (let attempt = 0; attempt < 5; attempt++) {
    let cur = getShared("hits");
    let n: i64 = cur.result == WasmResultValues.Ok ? I64.parseInt(cur.value) : 0;
    let next = (n + 1).toString();
    let rc = setShared("hits", next, cur.cas);
    if (rc == WasmResultValues.Ok) return next;
  }
  return "conflict";
}

class Props extends Context {
  path: string = "";
  method: string = "";
  source: string = "";
  hits: string = "";

  constructor(context_id: u32, root: PropsRoot) {
    super(context_id, root);
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.path = propertyString(["request", "path"]);
    this.method = propertyString(["request", "method"]);
    this.source = propertyString(["source", "address"]);
    this.hits = bumpHits();
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let h = stream_context.headers.response;
    h.add("x-prop-path", this.path);
    h.add("x-prop-method", this.method);
    h.add("x-prop-source", this.source);
    h.add("x-prop-plugin", propertyString(["plugin_name"]));
    h.add("x-prop-root-id", propertyString(["plugin_root_id"]));
    h.add("x-prop-status", propertyInt(["response", "code"]).toString());
    h.add("x-prop-missing", getProperty(["no", "such", "property"]).found ? "found" : "not-found");
    h.add("x-shared-hits", this.hits);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new PropsRoot(context_id); }, "props");
