// The Thrift service of examples/rpc: thrift_provider.py serves it, thrift_consumer.py calls it.
service Greeter {
  string hello(1: string name),
  string slow(1: i32 ms),
}
