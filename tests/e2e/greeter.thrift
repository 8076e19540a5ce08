// The service of tests/e2e/test_rpc_thrift.py's provider (thrift_peer.py).
service Greeter {
  string hello(1: string name),
  string sleep(1: i32 ms),
  oneway void ping(1: string note),
  i32 pings(),
  i32 connections(),
}
