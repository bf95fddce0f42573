"""Proxies: listeners that forward HTTP, WebSocket and TCP to pools of targets."""
