// Does nothing: the cost of running a filter at all (benchmarks).
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext } from "@solo-io/proxy-runtime";

class NoopRoot extends RootContext {
  // the SDK's own onConfigure corrupts memory (ABI reference, section 9)
  onConfigure(size: u32): bool {
    return true;
  }

  createContext(context_id: u32): Context {
    return new Context(context_id, this);
  }
}

registerRootContext((context_id: u32) => { return new NoopRoot(context_id); }, "noop");
