"""DistributedDataParallel: two gloo processes on localhost train exactly like one process.

Hidden states are plain attributes, not buffers, so DDP's ``broadcast_buffers`` (which
copies rank 0's buffers to every rank before each forward) sends only ``beta``,
``threshold``, ``graded_spikes_factor`` and ``reset_mechanism_val``, never ``mem`` or
``comp``: each rank keeps the states of its own part of the batch.

Teardown: each worker must leave no process-group thread running when it exits. A gloo
group that outlives ``destroy_process_group()`` keeps two gloo work threads, gloo's TCP
event-loop thread and (on rank 0) the TCPStore server thread running into interpreter
shutdown, and a process that exits like that aborts now and then with "terminate called
without an active exception" (SIGABRT), more often on a loaded machine. In torch 2.14 the
group does outlive it when ``torch.distributed.nn`` is first imported after
``init_process_group``: its functions take ``group=group.WORLD`` as a default argument,
which keeps a reference to the live default group for the rest of the process. DDP's
constructor imports it (through ``torch._dynamo``), so a plain DDP script hits this; it
has nothing to do with CLIF. ``import snntorch_clif`` imports it first, which makes those
defaults ``None``; this module relies on that (it does not import it itself), and the
workers check that the group's threads are gone before they return.
"""

import gc
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF

pytestmark = pytest.mark.slow

T, BATCH, STEPS = 4, 8, 3


def make_net(mode: str) -> nn.Module:
    torch.manual_seed(0)
    if mode == "init_hidden":
        return nn.Sequential(nn.Linear(6, 12), CLIF(init_hidden=True, learn_beta=True), nn.Linear(12, 3),
                             CLIF(init_hidden=True, learn_threshold=True, output=True))

    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 12), nn.Linear(12, 3)
            self.lif1, self.lif2 = CLIF(learn_beta=True), CLIF(learn_threshold=True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            comp1, mem1 = self.lif1.reset_mem()
            comp2, mem2 = self.lif2.reset_mem()
            mems = []
            for xt in x:
                spk1, comp1, mem1 = self.lif1(self.fc1(xt), comp1, mem1)
                spk2, comp2, mem2 = self.lif2(self.fc2(spk1), comp2, mem2)
                mems.append(mem2)
            return spk2, comp2, torch.stack(mems)

    return Explicit()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return 2 * torch.rand(STEPS, T, BATCH, 6, generator=g), torch.randint(0, 3, (STEPS, BATCH), generator=g)


def loss_of(net: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if mode == "init_hidden":
        snntorch_clif.reset(net)
        mems = torch.stack([net(xt)[2] for xt in x])
    else:
        mems = net(x)[2]
    return nn.functional.cross_entropy(mems.mean(0), y)


def train(net: nn.Module, mode: str, rank: int, world: int) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    xs, ys = data()
    per_rank = BATCH // world
    for x, y in zip(xs, ys):
        part = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = loss_of(net, mode, x[:, part], y[part])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def process_group_threads() -> list[str]:
    """Names of this process's threads that belong to a process group (gloo, TCPStore); Linux."""
    if not os.path.isdir("/proc/self/task"):
        return []
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:  # the thread ended while we listed them
            pass
    return [name for name in names if "gloo" in name or "tcpstore" in name]


def worker(rank: int, world: int, port: int, mode: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ddp = nn.parallel.DistributedDataParallel(make_net(mode))
        train(ddp, mode, rank, world)
        torch.save({k: v.detach().clone() for k, v in ddp.module.state_dict().items()}, f"{out}.{rank}")
        del ddp  # DDP's reducer holds the group: drop it so that destroying the group joins its threads
        dist.barrier()  # neither rank tears down while the other may still use it (rank 0 hosts the store)
    finally:
        dist.destroy_process_group()
    gc.collect()
    # Joined here, not left running into interpreter shutdown (see the module docstring).
    left = process_group_threads()
    assert not left, f"rank {rank}: threads {left} outlived destroy_process_group()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["init_hidden", "explicit"])
def test_two_ranks_match_one_process(mode: str, tmp_path) -> None:
    out = str(tmp_path / "state")
    mp.spawn(worker, args=(2, free_port(), mode, out), nprocs=2, join=True)
    rank0, rank1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    single = make_net(mode)
    train(single, mode, 0, 1)
    reference = single.state_dict()
    initial = make_net(mode).state_dict()
    assert any(not torch.equal(reference[k], initial[k]) for k in reference)  # training moved something
    for key, value in reference.items():
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=1e-6)
