// Asks an auth cluster before letting a request on: proxy_http_call with the
// client's authorization header, the stream paused until the answer. 200 lets
// the request continue with x-auth-user from the auth service's x-user header;
// anything else (or no answer) is a local 403.
// config: {"cluster": "auth", "path": "/check"}
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
         Headers, WasmResultValues,
         LogLevelValues, log } from "@solo-io/proxy-runtime";
import { pluginConfig, jsonString, headerPair, forbid } from "./common";

class AuthRoot extends RootContext {
  cluster: string = "auth";
  path: string = "/check";

  onConfigure(size: u32): bool {
    let cfg = pluginConfig(size);
    this.cluster = jsonString(cfg, "cluster", this.cluster);
    this.path = jsonString(cfg, "path", this.path);
    return true;
  }

  createContext(context_id: u32): Context {
    return new Auth(context_id, this);
  }
}

function deny(reason: string): void {
  forbid("denied by auth service", reason);
}

// The SDK has no closures: the callback gets its stream context back as an argument.
function onAuthResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (headers == 0) {
    deny("auth service unavailable");
    return;
  }
  let status = stream_context.headers.http_callback.get(":status");
  if (status != "200") {
    deny("auth service said " + status);
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
      deny("auth service not reachable");
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32) => { return new AuthRoot(context_id); }, "auth_call");
