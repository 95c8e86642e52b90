"""The local data plane as Deployments of its own (`--local-dataplane deployment`).

In a cluster the controller does not run NGINX: it writes each Gateway's
data-plane configuration into a Secret and provisions a Deployment of agents
that read it, so the data plane scales, restarts and fails over independently
of the controller.

- config.py: the delivered document (state + static needs), its version, and
  the agents' report; codec.py: the strict JSON codec it uses.
- manifests.py: the per-Gateway objects (Secret, ServiceAccount, Role,
  RoleBinding, Service, Deployment), pure.
- provider.py: the controller side (a Provider: apply/delete per Gateway).
- agent.py: `agc-controller dataplane`, NGINX's supervisor in the pod.

The build half (model → state and static needs) and the program half (state
→ running NGINX) are the process mode's own (agc_controller.providers.local).
"""
