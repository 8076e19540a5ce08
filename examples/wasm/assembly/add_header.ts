// Adds a request header before routing and a response header on the way back.
// config: {"request_header": "x-wasm-request", "response_header": "x-wasm-response", "value": "..."}
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { pluginConfig, jsonString } from "./common";

class AddHeaderRoot extends RootContext {
  requestHeader: string = "x-wasm-request";
  responseHeader: string = "x-wasm-response";
  value: string = "mosnx";

  onConfigure(size: u32): bool {
    let cfg = pluginConfig(size);
    this.requestHeader = jsonString(cfg, "request_header", this.requestHeader);
    this.responseHeader = jsonString(cfg, "response_header", this.responseHeader);
    this.value = jsonString(cfg, "value", this.value);
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  root: AddHeaderRoot;

  constructor(context_id: u32, root: AddHeaderRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add(this.root.requestHeader, this.root.value);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(this.root.responseHeader, this.root.value);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "add_header");
