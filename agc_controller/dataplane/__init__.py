"""The local data plane as Deployments of its own (`--local-dataplane deployment`).

In a cluster the controller does not run NGINX: it writes each Gateway's
data-plane configuration into Secrets (a manifest and up to 16 shards of the
router state) and provisions a Deployment of agents that read them, so the
data plane scales, restarts and fails over independently of the controller.

- config.py: the delivered documents (manifest, shards), the version, and the
  agents' report; codec.py: the strict JSON codec the static needs use.
- shards.py: the controller's state of a Gateway as shards, updated by
  difference, pure.
- manifests.py: the per-Gateway objects (Secrets, ServiceAccount, Role,
  RoleBinding, Service, Deployment), pure.
- provider.py: the controller side (a Provider: apply/delete per Gateway).
- agent.py: `agc-controller dataplane`, NGINX's supervisor in the pod.

The build half (model → state and static needs) and the program half (state
→ running NGINX) are the process mode's own (agc_controller.providers.local).
"""
