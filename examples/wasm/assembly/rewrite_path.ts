// Rewrites the request path prefix (query kept) before routing.
// config: {"from": "/old/", "to": "/new/"}
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { pluginConfig, jsonString } from "./common";

class RewriteRoot extends RootContext {
  from: string = "";
  to: string = "";

  onConfigure(size: u32): bool {
    let cfg = pluginConfig(size);
    this.from = jsonString(cfg, "from", "");
    this.to = jsonString(cfg, "to", "");
    return this.from != "";   // a rewrite without a prefix is a config error
  }

  createContext(context_id: u32): Context {
    return new Rewrite(context_id, this);
  }
}

class Rewrite extends Context {
  root: RewriteRoot;

  constructor(context_id: u32, root: RewriteRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let path = stream_context.headers.request.get(":path");
    if (path.startsWith(this.root.from)) {
      let rewritten = this.root.to + path.substring(this.root.from.length);
      stream_context.headers.request.replace(":path", rewritten);
      stream_context.headers.request.add("x-original-path", path);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new RewriteRoot(context_id); }, "rewrite_path");
