"""Kubernetes plumbing: API client construction and server-side apply."""

from agc_controller.kube.client import api_client_from_kubeconfig, server_side_apply

__all__ = ["api_client_from_kubeconfig", "server_side_apply"]
