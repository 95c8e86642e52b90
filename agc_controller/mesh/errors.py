"""The mesh's one error: why a workload identity is missing, and whether time may fix it."""

from __future__ import annotations


class MeshError(Exception):
    """A workload certificate could not be obtained; `temporary` when trying again may help."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary
