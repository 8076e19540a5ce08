// Asks an auth cluster about a request's body before letting the request on: the
// body is buffered to its end, then sent in a proxy_http_call (POST) while the
// stream waits. 200 lets the request continue, body unchanged; anything else (or
// no answer) is a local 403.
// config: {"cluster": "auth", "path": "/check-body"}
export * from "@solo-io/proxy-runtime/proxy";
import { Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
         Headers, WasmResultValues,
         LogLevelValues, log } from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";
import { ClusterCallRoot, authorized, headerPair, forbid } from "./common";

const DETAILS = "body denied by auth service";

class BodyAuthRoot extends ClusterCallRoot {
  createContext(context_id: u32): Context {
    return new BodyAuth(context_id, this);
  }
}

function onVerdict(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (authorized(headers, DETAILS)) {
    origin.continueRequest();
  }
}

class BodyAuth extends Context {
  root: BodyAuthRoot;

  constructor(context_id: u32, root: BodyAuthRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    let body = get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, <u32>size);
    let headers: Headers = [
      headerPair(":method", "POST"),
      headerPair(":path", this.root.path),
      headerPair(":authority", this.root.cluster),
    ];
    let rc = this.root.httpCall(this.root.cluster, headers, body, [], 2000, this, onVerdict);
    if (rc != WasmResultValues.Ok) {
      log(LogLevelValues.error, "http_call failed: " + rc.toString());
      forbid(DETAILS, "auth service not reachable");
    }
    return FilterDataStatusValues.StopIterationAndBuffer;
  }
}

registerRootContext((context_id: u32) => { return new BodyAuthRoot(context_id, "/check-body"); }, "body_auth");
