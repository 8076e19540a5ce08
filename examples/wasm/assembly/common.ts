// Helpers the SDK (@solo-io/proxy-runtime 0.1.8) lacks or gets wrong: its
// RootContext.onConfigure passes the config size as an out-pointer, its
// shared-data and get_metric wrappers call the wrong imports. These call the
// host functions directly.
import * as imports from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";
import { get_buffer_bytes, BufferTypeValues, WasmResultValues } from "@solo-io/proxy-runtime/runtime";
import { HeaderPair, send_local_response, GrpcStatusValues, RootContext, stream_context } from "@solo-io/proxy-runtime";

class U32Ref { value: u32; }
class U64Ref { value: u64; }
class BytesRef { ptr: usize; size: usize; }

function u32Ptr(r: U32Ref): usize { return changetype<usize>(r) + offsetof<U32Ref>("value"); }
function u64Ptr(r: U64Ref): usize { return changetype<usize>(r) + offsetof<U64Ref>("value"); }

// The bytes the host returned through malloc, as an ArrayBuffer the GC owns.
function takeBytes(r: BytesRef): ArrayBuffer {
  if (r.size == 0) return new ArrayBuffer(0);
  let out = new ArrayBuffer(<i32>r.size);
  memory.copy(changetype<usize>(out), r.ptr, r.size);
  free(r.ptr);
  return out;
}

export function pluginConfig(size: u32): string {
  if (size == 0) return "";
  return String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, size));
}

// The string value of "key" in a flat JSON object (the plugin config, as the host
// serialises it), or `dflt` when the key is absent or its value is not a string.
// Strings are unescaped as JSON says: \n \t \r \b \f \" \\ \/ and \uXXXX (a
// surrogate pair stays a pair, so UTF-8 encoding joins it). Nested values of other
// keys are skipped whole.
export function jsonString(json: string, key: string, dflt: string): string {
  let i = skipSpace(json, 0);
  if (i >= json.length || json.charCodeAt(i) != 0x7B) return dflt;        // {
  i = skipSpace(json, i + 1);
  while (i < json.length && json.charCodeAt(i) == 0x22) {                  // "key"
    let name = readString(json, i);
    if (scanEnd < 0) return dflt;
    i = skipSpace(json, scanEnd);
    if (i >= json.length || json.charCodeAt(i) != 0x3A) return dflt;      // :
    i = skipSpace(json, i + 1);
    if (i < json.length && json.charCodeAt(i) == 0x22) {
      let value = readString(json, i);
      if (scanEnd < 0) return dflt;
      if (name == key) return value;
      i = scanEnd;
    } else {
      if (name == key) return dflt;
      i = skipValue(json, i);
      if (i < 0) return dflt;
    }
    i = skipSpace(json, i);
    if (i >= json.length || json.charCodeAt(i) != 0x2C) return dflt;      // ,
    i = skipSpace(json, i + 1);
  }
  return dflt;
}

// Where the last readString or skipValue stopped: the index after it, -1 if malformed.
let scanEnd: i32 = -1;

function skipSpace(s: string, i: i32): i32 {
  while (i < s.length) {
    let c = s.charCodeAt(i);
    if (c != 0x20 && c != 0x09 && c != 0x0A && c != 0x0D) break;
    i++;
  }
  return i;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// The JSON string whose opening quote is at `open`, unescaped; sets scanEnd.
function readString(s: string, open: i32): string {
  let out = "";
  let n = s.length;
  let i = open + 1;
  let start = i;
  while (i < n) {
    let c = s.charCodeAt(i);
    if (c == 0x22) {
      scanEnd = i + 1;
      return out + s.substring(start, i);
    }
    if (c != 0x5C) {
      i++;
      continue;
    }
    out += s.substring(start, i);
    if (i + 1 >= n) break;
    let e = s.charCodeAt(i + 1);
    i += 2;
    if (e == 0x6E) out += "\n";
    else if (e == 0x74) out += "\t";
    else if (e == 0x72) out += "\r";
    else if (e == 0x62) out += "\b";
    else if (e == 0x66) out += "\f";
    else if (e == 0x22 || e == 0x5C || e == 0x2F) out += String.fromCharCode(e);
    else if (e == 0x75) {                                                   // uXXXX
      if (i + 4 > n) break;
      let code = 0;
      for (let k = 0; k < 4; k++) {
        let d = hexDigit(s.charCodeAt(i + k));
        if (d < 0) { scanEnd = -1; return ""; }
        code = code * 16 + d;
      }
      out += String.fromCharCode(code);
      i += 4;
    } else {
      scanEnd = -1;
      return "";
    }
    start = i;
  }
  scanEnd = -1;
  return "";
}

// The index after the (non-string-led) JSON value at `i`: a number, literal, object
// or array, brackets balanced and strings inside skipped; -1 if malformed.
function skipValue(s: string, i: i32): i32 {
  let depth = 0;
  while (i < s.length) {
    let c = s.charCodeAt(i);
    if (c == 0x22) {
      readString(s, i);
      if (scanEnd < 0) return -1;
      i = scanEnd;
      continue;
    }
    if (c == 0x7B || c == 0x5B) depth++;
    else if (c == 0x7D || c == 0x5D) {
      if (depth == 0) return i;
      depth--;
    } else if (c == 0x2C && depth == 0) return i;
    i++;
  }
  return depth == 0 ? i : -1;
}

export class SharedValue {
  result: WasmResultValues = 0;
  value: string = "";
  cas: u32 = 0;
}

export function getShared(key: string): SharedValue {
  let k = String.UTF8.encode(key);
  let r = new BytesRef();
  let cas = new U32Ref();
  let out = new SharedValue();
  out.result = imports.proxy_get_shared_data(changetype<usize>(k), k.byteLength,
    changetype<usize>(r) + offsetof<BytesRef>("ptr"), changetype<usize>(r) + offsetof<BytesRef>("size"),
    u32Ptr(cas));
  out.value = out.result == WasmResultValues.Ok ? String.UTF8.decode(takeBytes(r)) : "";
  out.cas = out.result == WasmResultValues.Ok ? cas.value : 0;
  return out;
}

export function setShared(key: string, value: string, cas: u32): WasmResultValues {
  let k = String.UTF8.encode(key);
  let v = String.UTF8.encode(value);
  return imports.proxy_set_shared_data(changetype<usize>(k), k.byteLength,
    changetype<usize>(v), v.byteLength, cas);
}

export function getMetric(id: u32): u64 {
  let r = new U64Ref();
  if (imports.proxy_get_metric(id, u64Ptr(r)) != WasmResultValues.Ok) return 0;
  return r.value;
}

export class Property {
  found: bool;
  bytes: ArrayBuffer = new ArrayBuffer(0);
}

// proxy_get_property without the SDK's trap on NOT_FOUND; segments joined by NUL.
export function getProperty(segments: string[]): Property {
  let path = segments.join("\0");
  let p = String.UTF8.encode(path);
  let r = new BytesRef();
  let out = new Property();
  let rc = imports.proxy_get_property(changetype<usize>(p), p.byteLength,
    changetype<usize>(r) + offsetof<BytesRef>("ptr"), changetype<usize>(r) + offsetof<BytesRef>("size"));
  out.found = rc == WasmResultValues.Ok;
  out.bytes = out.found ? takeBytes(r) : new ArrayBuffer(0);
  return out;
}

export function propertyString(segments: string[]): string {
  let p = getProperty(segments);
  return p.found ? String.UTF8.decode(p.bytes) : "";
}

// int64 properties (response.code, ...) come as 8 little-endian bytes.
export function propertyInt(segments: string[]): i64 {
  let p = getProperty(segments);
  if (!p.found || p.bytes.byteLength != 8) return -1;
  return load<i64>(changetype<usize>(p.bytes));
}

// The SDK binds no proxy_set_buffer_bytes (it declares that signature under the
// name proxy_get_buffer_status).
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: u32, start: u32, length: u32, data: usize, size: usize): u32;

// Edits a body buffer the way Envoy allows: start 0/length 0 prepends,
// start >= size appends, start 0/length >= size replaces all.
export function setBuffer(typ: u32, start: u32, length: u32, data: ArrayBuffer): WasmResultValues {
  return proxy_set_buffer_bytes(typ, start, length, changetype<usize>(data), data.byteLength);
}

export function headerPair(k: string, v: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(k), String.UTF8.encode(v));
}

// A local 403 whose body says why; `details` is what access logs and stats see.
export function forbid(details: string, reason: string): void {
  send_local_response(403, details, String.UTF8.encode("forbidden: " + reason + "\n"),
                      [], GrpcStatusValues.InvalidCode);
}

// A root context whose streams call a cluster: {"cluster": ..., "path": ...} in the plugin config.
export class ClusterCallRoot extends RootContext {
  cluster: string = "auth";
  path: string;

  constructor(context_id: u32, path: string) {
    super(context_id);
    this.path = path;
  }

  onConfigure(size: u32): bool {
    let cfg = pluginConfig(size);
    this.cluster = jsonString(cfg, "cluster", this.cluster);
    this.path = jsonString(cfg, "path", this.path);
    return true;
  }
}

// Whether the auth service's answer to an http_call (`headers`: its header count, 0
// for no answer) lets the stream on; if not, the stream gets a 403 saying why.
export function authorized(headers: u32, details: string): bool {
  if (headers == 0) {
    forbid(details, "auth service unavailable");
    return false;
  }
  let status = stream_context.headers.http_callback.get(":status");
  if (status != "200") {
    forbid(details, "auth service said " + status);
    return false;
  }
  return true;
}
