"""The reconcile loop: informer events → Gateway keys → translate → apply → status."""
