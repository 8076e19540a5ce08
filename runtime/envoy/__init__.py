"""mosnx.runtime.envoy: Envoy v3 resources and bootstraps, translated into mosnx's model.

Everything here is pure: protobuf messages (decoded with xds-protos' generated
classes, never re-declared) in, runtime.model values out, with warnings for what
is valid Envoy but not served by mosnx, and a Rejection for what cannot be served.
The xDS client (proxy/) hands resources to apply(); the config loader hands an
Envoy bootstrap file to bootstrap.load_bootstrap_text().
"""
