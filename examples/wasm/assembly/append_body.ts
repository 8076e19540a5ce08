// Buffers the response body and appends a suffix at its end; with
// "request_suffix", does the same to the request body on its way upstream.
// config: {"suffix": "...", "request_suffix": "..."}
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
         stream_context } from "@solo-io/proxy-runtime";
import { BufferTypeValues } from "@solo-io/proxy-runtime/runtime";
import { pluginConfig, jsonString, setBuffer } from "./common";

class AppendRoot extends RootContext {
  suffix: string = "\nappended by wasm\n";
  requestSuffix: string = "";

  onConfigure(size: u32): bool {
    let cfg = pluginConfig(size);
    this.suffix = jsonString(cfg, "suffix", this.suffix);
    this.requestSuffix = jsonString(cfg, "request_suffix", "");
    return true;
  }

  createContext(context_id: u32): Context {
    return new Append(context_id, this);
  }
}

class Append extends Context {
  root: AppendRoot;

  constructor(context_id: u32, root: AppendRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (this.root.requestSuffix != "" && !end_of_stream) {
      stream_context.headers.request.remove("content-length");
    }
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    if (this.root.requestSuffix == "") {
      return FilterDataStatusValues.Continue;
    }
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    setBuffer(BufferTypeValues.HttpRequestBody, <u32>size, 0, String.UTF8.encode(this.root.requestSuffix));
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // the body grows, so its length is no longer known up front
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    let suffix = String.UTF8.encode(this.root.suffix);
    // start at the current size: append
    setBuffer(BufferTypeValues.HttpResponseBody, <u32>size, 0, suffix);
    return FilterDataStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AppendRoot(context_id); }, "append_body");
