"""Batches sized to the device's memory, and out-of-memory handled: the batch is halved and retried, no domain is
lost, the verdict does not change.

The out-of-memory errors are real allocation failures of a simulated small device
(:class:`tests.device_guard.MemoryCap`: any torch call that would allocate more than a few kilobytes fails with
``torch.OutOfMemoryError`` as on a GPU, or with the CPU allocator's ``RuntimeError``), raised from wherever the
engine allocates, not from a mocked function. Spies (wrappers that call the real functions) count the domains
each search creates and bounds.
"""

from __future__ import annotations

import pytest
import torch

from tests.device_guard import MemoryCap
from tests.test_device_plumbing import tiny_instances
from verifier.bab import input_split, relu_split
from verifier.bab.batching import input_split_batch, relu_split_batch
from verifier.complete import VerifyOptions, verify
from verifier.device import OutOfMemory, chunk_budget, halving_on_oom, is_out_of_memory

CAP = 2048  # bytes: the tiny networks' batches of 256 children do not fit, a few dozen do


@pytest.fixture(scope="module")
def instances():
    return tiny_instances()


def run(network, spec, method: str, cap: int | None = None, kind: str = "cuda"):
    torch.manual_seed(0)
    options = VerifyOptions(method=method, attack=False)
    if cap is None:
        return verify(network, spec, timeout=120, device="cpu", options=options), None
    with MemoryCap(cap, kind) as memory:
        result = verify(network, spec, timeout=120, device="cpu", options=options)
    return result, memory


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
@pytest.mark.parametrize("index", [13, 20])
def test_relu_split_halves_its_batch_and_bounds_every_child_once(instances, index, kind, monkeypatch):
    network, spec = instances[index]
    expected, _ = run(network, spec, "relu-split")
    created, bounded = [], []
    branch, bound = relu_split.ReluBranchAndBound.branch, relu_split.ReluBranchAndBound.bound

    def spy_branch(self, domains, coefficients):
        children, stuck = branch(self, domains, coefficients)
        created.append(len(children))
        return children, stuck

    def spy_bound(self, domains, iterations):
        result = bound(self, domains, iterations)   # an allocation failure leaves here: nothing recorded
        # (the float-sound default's certified passes over single fixed-phase domains bound no new child)
        if 1 < iterations != relu_split.FLOAT_SOUND_FIXED_STEPS:
            bounded.append(len(domains))
        return result

    monkeypatch.setattr(relu_split.ReluBranchAndBound, "branch", spy_branch)
    monkeypatch.setattr(relu_split.ReluBranchAndBound, "bound", spy_bound)
    result, memory = run(network, spec, "relu-split", CAP, kind)
    assert memory.failures > 0 and result.stats["oom_halvings"] > 0
    assert result.stats["batch"] < 256
    assert result.status == expected.status, result.message
    if result.status == "unsat":
        # every child of every committed branching was bounded exactly once, in batches that fit
        assert sum(bounded) == sum(created) == result.stats["domains"] - 1
        assert max(bounded) <= max(1, 2 * result.stats["batch"])


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_input_split_halves_its_batch_and_loses_no_domain(instances, kind, monkeypatch):
    network, spec = instances[20]   # unsat: every domain must be refuted, none may be dropped
    expected, _ = run(network, spec, "input-split")
    calls = []   # (boxes handed in, open boxes pushed) per completed call; the first is the root
    push = input_split._push_open

    def spy_push(network, problem, lower, upper, lb, A_x, stack, try_candidates, *rest):
        before = len(stack)
        witness = push(network, problem, lower, upper, lb, A_x, stack, try_candidates, *rest)
        calls.append((lower.shape[0], sum(entry[0].shape[0] for entry in stack[before:])))
        return witness

    monkeypatch.setattr(input_split, "_push_open", spy_push)
    result, memory = run(network, spec, "input-split", CAP, kind)
    assert memory.failures > 0 and result.stats["oom_halvings"] > 0
    assert result.status == expected.status == "unsat"
    # each committed step branched its parents into two halves each: every box ever left open (the root's
    # included) was branched exactly once, none dropped when a step failed and went back to the stack
    assert sum(pushed for _, pushed in calls) == sum(boxes for boxes, _ in calls[1:]) // 2


def test_a_batch_of_one_that_does_not_fit_gives_unknown_not_a_crash(instances):
    network, spec = instances[20]
    result, memory = run(network, spec, "relu-split", cap=64)
    assert result.status == "unknown" and "out of memory" in result.message
    assert memory.failures > 0


def test_halving_runs_every_index_exactly_once():
    class Options:
        batch = 16

    seen = []

    def bound(start, stop):
        if stop - start > 5:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        seen.extend(range(start, stop))
        return stop - start

    stats: dict = {}
    sizes = [size for _, _, size in halving_on_oom(bound, 37, Options, torch.device("cpu"), stats)]
    assert seen == list(range(37)) and sum(sizes) == 37
    assert Options.batch == 4 and stats == {"oom_halvings": 2, "batch": 4}
    with pytest.raises(OutOfMemory):
        list(halving_on_oom(lambda a, b: bound(0, 99), 3, Options, torch.device("cpu")))
    with pytest.raises(ValueError):  # anything but an allocation failure goes through
        list(halving_on_oom(lambda a, b: int("x"), 3, Options, torch.device("cpu")))


def test_allocation_failures_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                                         "allocate memory: you tried to allocate 80000000000 bytes."))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError) as error:  # a real CPU allocation failure, caught as one
        torch.empty(1 << 62, dtype=torch.uint8)
    assert is_out_of_memory(error.value)


def test_batch_sizes_follow_the_free_memory(instances, monkeypatch):
    """The CPU keeps its measured batch sizes while memory is plentiful; a device with little free memory gets
    smaller batches and chunks; a GPU's batches grow with its free memory (simulated, no GPU needed)."""
    import verifier.bab.batching as batching
    import verifier.device as device_module

    network, _ = instances[20]
    graph, cpu, cuda = network.graph, torch.device("cpu"), torch.device("cuda")
    free = {"value": 64 << 30}
    monkeypatch.setattr(device_module, "cached_free_memory", lambda device: free["value"])
    monkeypatch.setattr(batching, "cached_free_memory", lambda device: free["value"])
    assert relu_split_batch(graph, 9, torch.float32, cpu) == 256
    assert input_split_batch(graph, 9, torch.float32, cpu, 1024) == 1024
    assert chunk_budget(cpu) == 256 * 2**20
    big_gpu = relu_split_batch(graph, 9, torch.float32, cuda)
    assert big_gpu == batching.GPU_RELU_BATCH
    assert input_split_batch(graph, 9, torch.float32, cuda, 1024) == batching.GPU_INPUT_BATCH
    free["value"] = 1 << 20     # 1 MiB free
    assert relu_split_batch(graph, 9, torch.float32, cpu) < 256
    assert relu_split_batch(graph, 9, torch.float32, cuda) < big_gpu
    assert chunk_budget(cpu) == 16 * 2**20     # the floor
    per_domain = batching.relu_split_bytes(graph, 9, 4)
    assert relu_split_batch(graph, 9, torch.float32, cuda) * per_domain <= batching.MEMORY_SHARE * (1 << 20) or \
        relu_split_batch(graph, 9, torch.float32, cuda) == 2
