"""Process runtime: task wiring, health, and leader election."""

from agc_controller.runtime.leader import LeaderElector

__all__ = ["LeaderElector"]
