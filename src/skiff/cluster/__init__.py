"""skiff's cluster: many hosts as one (issue 8).

The pure core lives here: ``model`` (nodes, services, tasks and the task state machine),
``keys`` (where each object lives in the store), ``state/`` (the ``Store`` protocol and its
memory, SQLite and etcd implementations), ``view`` (a leader's in-memory mirror of the store),
``scheduler/`` (feasibility and ranking, pure), ``reconcile`` (desired vs actual, pure),
``plan`` (one store transaction per plan, compared against everything it read),
``orchestrator`` (the leader's loop: watch -> reconcile -> schedule -> commit) and ``sim``
(hollow nodes for scale benchmarks). Managers, agents, the CLI and the lab build on these.
"""
