"""mosnx.runtime: the contract every front end compiles into and the core executes.

Imports nothing of mosnx outside this package (DESIGN.md).
"""
from .actions import Action, LocalReply, Pause, redirect
from .attributes import ATTRIBUTES, Attribute, getter, getter_for, property_path
from .context import RequestHead, ResponseHead, StreamContext
from .diagnostics import ConfigError, Diagnostic, Span, did_you_mean
from .headers import Headers
from .model import (AccessLog, AdminConfig, CircuitBreakers, ClusterConfig, Config, Endpoint,
                    FilterSpec, Limits, Listener, ListenerConfig, Snapshot, Timeouts)
from .pipeline import EMPTY, HttpFilter, Pipeline
from .registry import BuildContext, RulesResult, register_filter, register_rules_loader
from .routes import (DirectResponse, MirrorPolicy, RedirectAction, RetryPolicy, Route,
                     RouteAction, RouteTable, VirtualHost)
from .snapshot import build_snapshot
from .stats import Store

__all__ = [n for n in dir() if not n.startswith("_")]
