"""A local pod runtime: kubelet and scheduler for one node, pods as local processes.

The Gateway API conformance suite (and our e2e tests) deploy echo backends as
Deployments, wait for their pods to be Ready and send traffic to the Gateway,
which proxies to the pod IPs kube-controller-manager publishes in
EndpointSlices. There is no kubelet, scheduler or container runtime here, so
this agent plays them for one node:

- Node: registers `node_name` (Ready, InternalIP = the pod network's gateway,
  capacity, podCIDR, the kubelet port) and keeps it alive with a Lease in
  kube-node-lease and a NodeReady heartbeat, so that the node lifecycle
  controller never evicts it. InternalIP is its only address: the apiserver
  reaches a kubelet at the first address of --kubelet-preferred-address-types
  (Hostname first by default), and the node name does not resolve.
- Scheduling: binds every pod without a node that asks for the default
  scheduler, has no scheduling gates and whose nodeSelector our labels satisfy.
- Pods: each gets a network namespace with its own IP (podnet.py). An "image"
  is an image repository mapped to an argv on this host; containers run as
  processes in the pod's namespace, each in a private mount and UTS namespace
  where the pod's volumes (secret, configMap, emptyDir, downwardAPI, projected,
  hostPath), written under state_dir/pods/<uid>/volumes/, are bind-mounted.
- Logs: the agent reads each process's stdout and stderr through pipes, as
  they fill (a process never blocks on its output), and writes them in the CRI
  log format, one file per process: state_dir/pods/<uid>/logs/<container>/<n>.log,
  lines `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>`. A container keeps
  the files of its current and its previous process (`previous=true`); they
  are not rotated, and stay on disk after the pod is gone (for post-mortems).
- Kubelet API (logapi.KubeletServer): HTTPS on InternalIP, port in the Node's
  daemonEndpoints, serving `GET /containerLogs/{ns}/{pod}/{container}` (so
  `kubectl logs` / pods/log work: sinceTime, sinceSeconds, tailLines,
  limitBytes, timestamps, previous, follow, stream) and `GET /healthz`. The
  certificate is self-signed: the apiserver verifies a kubelet's certificate
  only with --kubelet-certificate-authority, which ours does not set, and it
  presents no client certificate (no --kubelet-client-certificate), so there is
  no authentication. Instead the server listens on the bridge address only,
  and answers only connections from that same address, i.e. from host
  processes: pods, whose source is their pod IP, get 403.
- Status: phase, IPs, conditions and container states come from the processes'
  real state; readiness from the readinessProbe or, without one, from the
  process serving (see probes.py).

Invariants:
- One task per pod (pod.PodRunner). Whatever goes wrong with a pod is logged,
  shown in its status and retried; it never stops the agent or another pod.
- A pod's processes are stopped before its sandbox is destroyed, and the
  sandbox before the object is deleted (gracePeriodSeconds=0, as a kubelet does).
- Cancelling `NodeAgent.run()` stops every process and removes every namespace
  and link the agent made, even when the graceful clean-up is itself cancelled.
- Status goes through the status subresource and is written only when it
  differs from the object's (transition times kept); a 409 means re-read.

What a container sees that a real one would not: the host's filesystem.
Mount points (and workingDir) missing on the host are created there, empty, so
that the bind mount has somewhere to go; they stay after the pod is gone.
Outside its scope (the dev cluster needs none of it): liveness and startup
probes, lifecycle hooks, resource limits, service links, hostNetwork pods,
volume content updates after a container started, gRPC probes (checked as a
TCP connect to the probe's port), node affinity and taints (this is the only
node), the kubelet API beyond logs and healthz (exec, attach, port-forward,
stats). Probes always target the pod IP.

Modules, one job each: agent (NodeAgent: informers, a runner per pod, clean-up),
registration (Node, heartbeat, Lease), scheduler (binding), pod (PodRunner: a
pod's lifecycle), podspec (reading the spec), env, volumes, tokens (what a
container starts with), processes (starting and stopping container processes),
probes (readiness), containers and podstatus (state and status), crilog
(container output in CRI format), logapi (the kubelet API), api (apiserver
calls), __main__ (the command line).
"""

from devcluster.nodeagent.agent import NodeAgent
from devcluster.nodeagent.podspec import expand, image_repository

__all__ = ["NodeAgent", "expand", "image_repository"]
