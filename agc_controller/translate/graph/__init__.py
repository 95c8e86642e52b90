"""The graph: every Gateway API object of one Gateway's world, validated.

Built in an explicit order — class → gateway and listeners → routes (parse,
then resolve backends) → attach routes to listeners → BackendTLSPolicies — and
every node carries what is valid and the conditions that say why not. The ALB
model is a pure function of the graph (see translate.build).
"""
