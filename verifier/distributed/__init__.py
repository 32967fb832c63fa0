"""Parallel and distributed runs on Dask (optional extra ``verifier[distributed]``)."""
