"""The fused CPU kernel's data movement: blocks, threads, reused output memory, page faults.

tests/test_ops.py checks the kernel's numbers against the reference on small problems;
these tests check what changes with the problem's size and the machine: neurons are cut
into blocks of 1024 and spread over threads (chunks claimed by the caller and helper
threads, under a policy that falls back to one thread on a contended CPU), the next time
step's rows are prefetched, and large outputs come from a pool of reused memory
(csrc/cpu/clif_cpu.cpp). None of that may change a single bit of any result. The thread
policy is checked through its hook (backends.cpu_threads), never through timings.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from snntorch_clif import backends, ops

pytestmark = pytest.mark.skipif(not ops.has_kernel("cpu"), reason=f"CPU kernel not built: {ops.LOAD_ERROR}")

FWD = torch.ops.snntorch_clif.clif_forward if ops.AVAILABLE else None
BWD = torch.ops.snntorch_clif.clif_backward if ops.AVAILABLE else None
# reset "zero" and the sigmoid surrogate (slope 5) use every branch of the row functions
RESET, SURROGATE, PARAM = 1, 3, 5.0


def make_inputs(T: int, N: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Op arguments with per-neuron parameters and frequent spikes, and random incoming gradients."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def rand(*size: int, lo: float, hi: float, dt: torch.dtype) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(size, generator=g, dtype=torch.float64)).to(dt)

    return {
        "x": (torch.randn(T, N, generator=g, dtype=torch.float64) * 1.5 + 0.4).to(dtype),
        "comp": rand(N, lo=0.0, hi=2.0, dt=dtype),
        "mem": rand(N, lo=-1.0, hi=1.0, dt=dtype),
        "beta": rand(N, lo=0.1, hi=0.95, dt=acc),
        "thr": rand(N, lo=0.5, hi=1.5, dt=acc),
        "gsf": rand(N, lo=0.5, hi=1.5, dt=acc),
        "gspk": torch.randn(T, N, generator=g, dtype=torch.float64).to(dtype),
        "gcomp": torch.randn(T, N, generator=g, dtype=torch.float64).to(dtype),
        "gmem": torch.randn(T, N, generator=g, dtype=torch.float64).to(dtype),
    }


def run_op(a: dict[str, torch.Tensor], reset_delay: bool = False) -> list[torch.Tensor]:
    """Every output of the forward (state sequences on) and of the backward (parameter partials on)."""
    spk, comp, mem, saved = FWD(a["x"], a["comp"], a["mem"], a["beta"], a["thr"], a["gsf"],
                                RESET, SURROGATE, PARAM, True, True, False, reset_delay)
    grads = BWD(a["gspk"], a["gcomp"], a["gmem"], saved, a["mem"], a["beta"], a["thr"], a["gsf"],
                RESET, SURROGATE, PARAM, True, reset_delay)
    return [spk, comp, mem, *grads]


def neuron_slice(a: dict[str, torch.Tensor], lo: int, hi: int) -> dict[str, torch.Tensor]:
    return {k: (v[:, lo:hi] if v.dim() == 2 else v[lo:hi]).contiguous() for k, v in a.items()}


def assert_bitwise(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, i
        assert torch.equal(g.view(torch.uint8 if g.element_size() == 1 else
                                  {2: torch.int16, 4: torch.int32, 8: torch.int64}[g.element_size()]),
                           w.view(torch.uint8 if w.element_size() == 1 else
                                  {2: torch.int16, 4: torch.int32, 8: torch.int64}[w.element_size()])), \
            f"output {i} differs"


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("T", [1, 5, 33])
def test_results_do_not_depend_on_blocks_or_threads(dtype: torch.dtype, T: int, threads: None) -> None:
    """Several blocks of 1024 neurons and a partial one: each neuron's results are the same
    bits whether it runs in the whole problem, in a slice cut across the blocks, or on 1 or 2
    threads (a wrong offset in a block, a row or the saved buffer would mix neurons up)."""
    N = 3 * 1024 + 37
    a = make_inputs(T, N, dtype, seed=T)
    torch.set_num_threads(1)
    whole = run_op(a)
    torch.set_num_threads(2)
    assert_bitwise(run_op(a), whole)
    for lo, hi in [(0, 1500), (1500, N), (1024, 2048), (N - 37, N)]:
        part = run_op(neuron_slice(a, lo, hi))
        want = [w[:, lo:hi] if w.dim() == 2 else w[lo:hi] for w in whole]
        assert_bitwise(part, want)


@pytest.fixture
def policy():
    """Put the CPU kernel's thread policy back to its default (adaptive, not contended) afterwards."""
    yield
    backends.cpu_threads(policy="adaptive", contended_for=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("reset_delay", [False, True])
def test_results_do_not_depend_on_the_thread_policy(dtype: torch.dtype, reset_delay: bool, threads: None,
                                                     policy: None) -> None:
    """Ten chunks of 1024 neurons (the last one partial) on the calling thread alone, shared with
    one or two helper threads, or run alone because the CPU is marked contended: the same bits."""
    T, N = 7, 9 * 1024 + 5
    a = make_inputs(T, N, dtype, seed=5)
    torch.set_num_threads(1)
    want = run_op(a, reset_delay)
    for n, name, contended in [(2, "threads", 0), (3, "threads", 0), (2, "single", 0), (2, "adaptive", 60)]:
        torch.set_num_threads(n)
        before = backends.cpu_threads(policy=name, contended_for=contended)
        assert_bitwise(run_op(a, reset_delay), want)
        after = backends.cpu_threads()
        threaded = after.threaded_calls - before.threaded_calls
        assert threaded == (2 if name == "threads" else 0), (n, name)


def test_the_policy_follows_its_hook_and_torch_threads(threads: None, policy: None) -> None:
    a = make_inputs(8, 8 * 1024, torch.float32, seed=6)
    torch.set_num_threads(2)
    start = backends.cpu_threads(policy="adaptive", contended_for=0)
    assert start.policy == "adaptive" and not start.contended
    run_op(a)
    first = backends.cpu_threads()
    # the forward shares its work (the backward too, unless the machine's own load made a helper late)
    assert first.threaded_calls - start.threaded_calls >= 1 and first.helper_threads >= 1
    marked = backends.cpu_threads(contended_for=60)  # as if a helper had just been late
    assert marked.contended
    run_op(a)
    after = backends.cpu_threads()
    assert after.threaded_calls == marked.threaded_calls and after.single_calls == marked.single_calls + 2
    backends.cpu_threads(policy="threads")  # forced threads ignore the contention
    run_op(a)
    forced = backends.cpu_threads()
    assert forced.threaded_calls == after.threaded_calls + 2
    backends.cpu_threads(policy="single", contended_for=0)
    run_op(a)
    single = backends.cpu_threads()
    assert single.threaded_calls == forced.threaded_calls and single.single_calls == forced.single_calls + 2
    torch.set_num_threads(1)  # torch.set_num_threads(1): no helper, whatever the policy
    backends.cpu_threads(policy="threads")
    run_op(a)
    assert backends.cpu_threads().threaded_calls == single.threaded_calls
    torch.set_num_threads(2)
    run_op(make_inputs(8, 900, torch.float32, seed=7))  # one chunk, too little work to share
    assert backends.cpu_threads().threaded_calls == single.threaded_calls


def test_bad_policy_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        backends.cpu_threads(policy="fast")
    with pytest.raises(ValueError, match="contended_for"):
        backends.cpu_threads(contended_for=-1.0)


def test_the_environment_sets_the_policy() -> None:
    code = "from snntorch_clif import backends; print(backends.cpu_threads().policy)"
    for value, want in [("single", "single"), ("threads", "threads"), ("", "adaptive")]:
        env = dict(os.environ, SNNTORCH_CLIF_CPU_POLICY=value)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == want


def test_callers_on_several_python_threads_share_the_helpers_safely(threads: None, policy: None) -> None:
    # One caller at a time gets the helpers; another meanwhile runs alone: every result is right.
    torch.set_num_threads(2)
    backends.cpu_threads(policy="threads")
    cases = [make_inputs(5, 6 * 1024 + 3, torch.float32, seed=20 + i) for i in range(3)]
    want = [run_op(a) for a in cases]
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(6):
            if not all(torch.equal(g, w) for g, w in zip(run_op(cases[i]), want[i])):
                errors.append(f"thread {i}")

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_helper_threads_of_its_own(threads: None, policy: None) -> None:
    # The parent's helpers do not exist in a forked child (a DataLoader worker): the child must
    # start its own, not wait for the parent's forever.
    torch.set_num_threads(2)
    backends.cpu_threads(policy="threads")
    a = make_inputs(6, 5 * 1024, torch.float32, seed=13)
    want = [t.clone() for t in run_op(a)]
    assert backends.cpu_threads().helper_threads >= 1
    pid = os.fork()
    if pid == 0:  # child: exit status 0 when the results are right (SIGALRM ends a deadlock)
        ok = False
        try:
            signal.alarm(120)
            before = backends.cpu_threads(policy="threads")
            got = run_op(a)
            after = backends.cpu_threads()
            ok = all(torch.equal(g, w) for g, w in zip(got, want)) and after.threaded_calls > before.threaded_calls
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_backward_without_state_gradients_or_mem0_across_blocks(threads: None) -> None:
    """The optional arguments (no state gradients, u_{-1} taken as 0) on several blocks."""
    T, N = 9, 2 * 1024 + 5
    a = make_inputs(T, N, torch.float32, seed=3)
    saved = FWD(a["x"], a["comp"], a["mem"], a["beta"], a["thr"], a["gsf"], 0, 1, 2.0, False, True)[3]
    full = BWD(a["gspk"], None, None, saved, None, a["beta"], a["thr"], a["gsf"], 0, 1, 2.0, False)
    b = neuron_slice(a, 1000, 2100)
    saved_b = FWD(b["x"], b["comp"], b["mem"], b["beta"], b["thr"], b["gsf"], 0, 1, 2.0, False, True)[3]
    part = BWD(b["gspk"], None, None, saved_b, None, b["beta"], b["thr"], b["gsf"], 0, 1, 2.0, False)
    assert_bitwise(list(part[:3]), [full[0][:, 1000:2100], full[1][1000:2100], full[2][1000:2100]])


@pytest.mark.parametrize("T", [1, 16, 17, 40])
def test_saved_buffer_holds_h_at_every_step_and_m_every_16(T: int, threads: None) -> None:
    """The layout of clif_checks.h: rows 0..T-1 are h_t = beta u_{t-1} + x_t, row T + c is
    m_{16c - 1} (m_{-1} = comp0), the bits of the forward's own states, across blocks."""
    torch.set_num_threads(2)
    N = 2 * 1024 + 7
    a = make_inputs(T, N, torch.float32, seed=T)
    _, comp, mem, saved = FWD(a["x"], a["comp"], a["mem"], a["beta"], a["thr"], a["gsf"],
                              RESET, SURROGATE, PARAM, True, True)
    assert saved.shape == (ops.saved_rows(T), N) == (T + (T + 15) // 16, N)
    mem_before = torch.cat([a["mem"][None], mem[:-1]])  # u_{t-1}
    comp_before = torch.cat([a["comp"][None], comp[:-1]])  # m_{t-1}
    h = a["beta"] * mem_before + a["x"]  # one rounding per operation, as in the kernel
    assert torch.equal(saved[:T].view(torch.int32), h.view(torch.int32))
    assert torch.equal(saved[T:].view(torch.int32), comp_before[::ops.SAVE_CHUNK].view(torch.int32))


def test_reused_output_memory_is_fully_overwritten() -> None:
    """Outputs large enough for the pool reuse the memory of earlier, freed outputs (stale
    values); every element must still be written: problem A, then B, then A again."""
    T, N = 24, 40_000  # spikes and dx 3.7 MiB, saved 4 MiB: pooled
    a, b = make_inputs(T, N, torch.float32, seed=10), make_inputs(T, N, torch.float32, seed=11)
    first = [t.clone() for t in run_op(a)]
    run_op(b)
    assert_bitwise(run_op(a), first)


def test_pooled_outputs_are_ordinary_tensors() -> None:
    """A pooled output can be resized, viewed and freed like any CPU tensor."""
    a = make_inputs(64, 8192, torch.float32, seed=4)  # spk 2 MiB: pooled
    spk = run_op(a)[0]
    want = spk.clone()
    spk.resize_(2 * 64, 8192)  # grows: new memory from the same allocator, old values kept
    assert torch.equal(spk[:64], want)
    spk[64:] = 1.0
    assert float(spk[64:].sum()) == 64 * 8192
    del spk  # given back to the pool; the next call reuses it
    assert_bitwise(run_op(a)[:1], [want])


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults_per_call(T: int, N: int, calls: int = 3) -> float:
    a = make_inputs(T, N, torch.float32, seed=5)
    run_op(a)  # first call: the pool maps its buffers
    before = minor_faults()
    for _ in range(calls):
        run_op(a)
    return (minor_faults() - before) / calls


def test_large_outputs_are_reused_without_page_faults(threads: None) -> None:
    """T=64, N=65536: saved is 17 MiB, spikes, dx and the state sequences 16 MiB each, around
    glibc's 32 MiB mmap threshold. Fresh mappings fault one 4 KiB page at a time (~20,500
    faults per call: what every call paid before the pool); reused memory faults none."""
    torch.set_num_threads(1)
    T, N = 64, 65536
    fresh_pages = (ops.saved_rows(T) + 4 * T) * N * 4 // 4096
    assert faults_per_call(T, N) < fresh_pages / 100


HUGE_PAGE = 2 << 20


def test_pool_can_be_turned_off() -> None:
    """SNNTORCH_CLIF_CPU_POOL_MB=0: outputs come from PyTorch's allocator (not 2 MiB-aligned
    mappings of the pool), with the same results."""
    a = make_inputs(24, 120_000, torch.float32, seed=10)  # saved 12 MiB, spikes 11 MiB
    on = run_op(a)
    assert on[0].data_ptr() % HUGE_PAGE == 0, "large outputs should come from the pool"
    code = textwrap.dedent("""
        import sys, torch
        sys.path.insert(0, {tests!r})
        import test_cpu_kernel as t
        out = t.run_op(t.make_inputs(24, 120_000, torch.float32, seed=10))
        print(out[0].data_ptr() % t.HUGE_PAGE)
        torch.save(out, {path!r})
    """)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"clif_pool_off_{os.getpid()}.pt")
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["SNNTORCH_CLIF_CPU_POOL_MB"] = "0"
    try:
        proc = subprocess.run([sys.executable, "-c", code.format(tests=tests, path=path)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout.split()[-1]) != 0, "with the pool off, outputs come from malloc"
        off = torch.load(path)
    finally:
        if os.path.exists(path):
            os.remove(path)
    assert_bitwise(off, on)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_use_the_pool() -> None:
    """A forked process (a DataLoader worker) inherits the pool with buffers cached and in use."""
    a = make_inputs(24, 40_000, torch.float32, seed=12)
    want = [t.clone() for t in run_op(a)]  # leaves pooled buffers cached
    held = run_op(a)  # and some in use
    pid = os.fork()
    if pid == 0:  # child: exit status 0 when the results are right
        ok = False
        try:
            torch.set_num_threads(1)
            got = run_op(a)
            ok = all(torch.equal(g, w) for g, w in zip(got, want))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert_bitwise(held, want)


FLT_MIN = torch.finfo(torch.float32).tiny


def silent_decay(T: int, dtype: torch.dtype, N: int = 2048) -> list[torch.Tensor]:
    """Neurons that never fire, comp0 = 1: m_t = sigma((1 - beta) h_t) m_{t-1} decays (h settles
    near -30, so by ~0.05 a step) into float32's subnormal range within ~30 steps (float64's
    within ~250). 2048 neurons run on two threads where there are two."""
    a = make_inputs(T, N, dtype, seed=5)
    a["x"] = torch.full((T, N), -3.0, dtype=dtype)
    a["comp"] = torch.ones(N, dtype=dtype)
    a["beta"] = torch.full((N,), 0.9, dtype=a["beta"].dtype)
    return run_op(a)


def subnormal_count(t: torch.Tensor) -> int:
    tiny = torch.finfo(t.dtype).tiny
    return int(((t != 0) & (t.abs() < tiny)).sum())


def test_float32_kernels_flush_subnormals_to_zero() -> None:
    # CLIF's silent-neuron decay and its gradient carry would fill long sequences with
    # subnormals, which x86 computes with at a fraction of the speed (clif_math.h)
    spk, comp, mem, dx, dcomp0, dmem0, *params = silent_decay(300, torch.float32)
    assert not bool(spk.any())
    for name, t in (("comp", comp), ("mem", mem), ("dx", dx), ("dcomp0", dcomp0), ("params", torch.cat(params))):
        assert subnormal_count(t) == 0, name
    assert float(comp[-1].abs().max()) == 0.0  # decayed through FLT_MIN to exactly zero
    assert float(comp[10].abs().min()) > FLT_MIN  # still normal early on


def test_float64_kernels_keep_subnormals() -> None:
    # gradcheck's kernels follow IEEE arithmetic to the last bit: no flushing
    _, comp, *_ = silent_decay(400, torch.float64, N=8)
    assert subnormal_count(comp) > 0


@pytest.mark.parametrize("user_flushes", [False, True])
def test_the_callers_subnormal_mode_is_restored_on_every_thread(user_flushes: bool, threads: None) -> None:
    # The kernel's threads flush only while it runs: afterwards eager ops on the calling
    # thread and on the worker threads (a 2-thread elementwise op) compute as before.
    torch.set_num_threads(2)
    assert torch.set_flush_denormal(user_flushes)  # True: this CPU has the switch
    try:
        silent_decay(300, torch.float32)
        small = torch.full((1 << 17,), 1e-38) * 0.5  # 5e-39: a subnormal, or 0 when flushed
        assert bool((small == 0).all()) if user_flushes else bool((small != 0).all())
        assert (float(torch.tensor(1e-38) * 0.5) == 0.0) == user_flushes
    finally:
        torch.set_flush_denormal(False)
