"""Parallel and distributed runs on Dask (``dask.distributed``; the optional extra ``verifier[distributed]``).

* One instance over many processes: :func:`verifier.verify` with ``workers=N`` (local worker processes),
  ``scheduler="tcp://HOST:PORT"`` (an existing cluster) or ``client=`` (a ``dask.distributed.Client``):
  the coordinator (:mod:`~verifier.distributed.coordinator`) bounds the root, farms subtrees of the branch
  and bound out to workers (:mod:`~verifier.distributed.worker`) for time slices, re-balances, and keeps
  the books of every domain (:mod:`~verifier.distributed.ledger`; frontiers in
  :mod:`~verifier.distributed.frontier`).
* Benchmark runs on a cluster: :class:`verifier.bench.dask_executor.DaskExecutor`.

Clusters (:mod:`~verifier.distributed.cluster`) are started or joined here; importing this package does not
import Dask.
"""

from __future__ import annotations

from typing import Any

from verifier.distributed.cluster import (
    INSTALL_HINT,
    Cluster,
    ClusterStarter,
    DistributedError,
    check_dask,
    connect,
    dask_available,
    require_dask,
    start_local,
    use_client,
)

__all__ = ["INSTALL_HINT", "Cluster", "ClusterStarter", "DistributedError", "check_dask", "connect", "dask_available",
           "require_dask", "start_local", "start_parallel", "use_client"]


def start_parallel(workers: int | None = None, scheduler: str | None = None, client: Any = None
                   ) -> ClusterStarter | None:
    """The cluster a verification run asked for, starting (or connecting) in the background so that its
    start-up overlaps the run's own loading, attack and root bound; None when it asked for none. At most
    one of ``workers`` (local worker processes), ``scheduler`` (an address) and ``client``."""
    given = [name for name, value in (("workers", workers), ("scheduler", scheduler), ("client", client))
             if value is not None]
    if not given:
        return None
    if len(given) > 1:
        raise DistributedError(f"give one of workers, scheduler and client, not {' and '.join(given)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DistributedError(f"workers must be a whole number of at least 1, got {workers!r}")
    check_dask()  # found, not imported: the import (about 1 s) happens in the background with the start
    if client is not None:
        return ClusterStarter(lambda: use_client(client))
    if scheduler is not None:
        return ClusterStarter(lambda: _joined(connect(scheduler)))
    return ClusterStarter(lambda: start_local(workers))


def _joined(cluster: Cluster, timeout: float = 60.0) -> Cluster:
    """An existing cluster once it has a worker (DistributedError after ``timeout``)."""
    try:
        cluster.wait_for_workers(1, timeout=timeout)
        from verifier.distributed.cluster import warm_up

        warm_up(cluster.client)
    except BaseException:
        cluster.close()
        raise
    return cluster
