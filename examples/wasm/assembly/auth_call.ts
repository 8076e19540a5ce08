// Asks an auth cluster before letting a request on: proxy_http_call with the
// client's authorization header, the stream paused until the answer. 200 lets
// the request continue with x-auth-user from the auth service's x-user header;
// anything else (or no answer) is a local 403.
// config: {"cluster": "auth", "path": "/check"}
export * from "@solo-io/proxy-runtime/proxy";
import { Context, registerRootContext, FilterHeadersStatusValues, stream_context,
         Headers, WasmResultValues,
         LogLevelValues, log } from "@solo-io/proxy-runtime";
import { ClusterCallRoot, authorized, headerPair, forbid } from "./common";

const DETAILS = "denied by auth service";

class AuthRoot extends ClusterCallRoot {
  createContext(context_id: u32): Context {
    return new Auth(context_id, this);
  }
}

// The SDK has no closures: the callback gets its stream context back as an argument.
function onAuthResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (!authorized(headers, DETAILS)) {
    return;
  }
  let user = stream_context.headers.http_callback.get("x-user");
  stream_context.headers.request.add("x-auth-user", user);
  origin.continueRequest();
}

class Auth extends Context {
  root: AuthRoot;

  constructor(context_id: u32, root: AuthRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let headers: Headers = [
      headerPair(":method", "GET"),
      headerPair(":path", this.root.path),
      headerPair(":authority", this.root.cluster),
      headerPair("authorization", stream_context.headers.request.get("authorization")),
    ];
    let rc = this.root.httpCall(this.root.cluster, headers, new ArrayBuffer(0), [], 2000, this,
                                onAuthResponse);
    if (rc != WasmResultValues.Ok) {
      log(LogLevelValues.error, "http_call failed: " + rc.toString());
      forbid(DETAILS, "auth service not reachable");
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32) => { return new AuthRoot(context_id, "/check"); }, "auth_call");
