"""A facility's worker that starts a flow run in well under a second.

Prefect's process worker polls its pool and starts every flow run as a new ``python -m
prefect.engine``, which imports Prefect and the runbook's modules again (~1,800 modules, seconds
on a loaded machine). In a failover those seconds are outage. This worker is the same process
worker (same pool type, job template, identity, state handling, cancellation and crash
reporting) with two changes:

- **a warm process** (``forkserver.py``): started by the worker, it imports Prefect's engine and
  every runbook once, then forks a fresh child per flow run. Each run is still its own process
  (its own memory, its own PID the worker signals to cancel or kill); a run that crashes or is
  killed takes only itself. Code changed on disk since the warm process started, or a run whose
  ``PYTHONPATH`` is not the warm process's, starts the classic way (``worker.py``).
- **a push channel**: the worker subscribes to the server's event stream and polls its pool the
  moment a run of that pool is scheduled, instead of waiting for the next poll; the poll stays
  as the fallback.

    python -m hotspare.warm_worker --pool hotspare-east --name worker-east
"""
