"""Autoscaling tools: simulate the worker fleet under the Kubernetes HPA or KEDA.

Modules: :mod:`.hpa` (the HPA algorithm), :mod:`.keda` (KEDA's 0<->1 activation),
:mod:`.arrivals` (load patterns), :mod:`.fleet` (queue and workers), :mod:`.simulate`
(wiring, summary, sweep), :mod:`.values` (Helm values), :mod:`.plot`, :mod:`.cli`.
"""
