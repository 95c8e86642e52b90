"""agc-controller: a Gateway API controller for L7 load balancers."""

__version__ = "0.1.0"
