// Answers 403 with a body when the request carries no token.
// config: {"header": "authorization"} (the header that must be present)
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
         send_local_response, GrpcStatusValues, HeaderPair } from "@solo-io/proxy-runtime";
import { pluginConfig, jsonString } from "./common";

class DenyRoot extends RootContext {
  header: string = "authorization";

  onConfigure(size: u32): bool {
    this.header = jsonString(pluginConfig(size), "header", this.header);
    return true;
  }

  createContext(context_id: u32): Context {
    return new Deny(context_id, this);
  }
}

class Deny extends Context {
  root: DenyRoot;

  constructor(context_id: u32, root: DenyRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get(this.root.header) != "") {
      return FilterHeadersStatusValues.Continue;
    }
    let headers: HeaderPair[] = [
      new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("wasm")),
    ];
    send_local_response(403, "missing token", String.UTF8.encode("forbidden: missing token\n"),
                        headers, GrpcStatusValues.InvalidCode);
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32) => { return new DenyRoot(context_id); }, "deny");
