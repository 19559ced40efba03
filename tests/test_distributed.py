"""DDP on the CPU: two gloo processes train to identical weights, equal to one process on the whole batch."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from poselib.engine import distributed
from poselib.engine.trainer import TrainConfig, Trainer, read_metrics_log

WORLD = 2
PER_RANK_BATCH = 4


class LinearData(torch.utils.data.Dataset):
    def __init__(self, n: int = 32, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        x = torch.from_numpy(rng.normal(size=3).astype(np.float32))
        return x, (x * torch.tensor([1.0, -2.0, 0.5])).sum(0, keepdim=True) + 0.05 * float(rng.normal())


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))  # no batch-dependent layers


def mean_mse(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    loss = ((model(x) - y) ** 2).mean()
    return loss, {"mse": loss.item()}


def train_config(batch_size: int) -> TrainConfig:
    return TrainConfig(
        epochs=2, batch_size=batch_size, optimizer="sgd", lr=0.05, momentum=0.9, log_every=1, checkpoint_every=3,
        seed=3, device="cpu", progress=False,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    try:
        assert distributed.init_distributed("gloo") == (rank, WORLD, rank)
        assert distributed.is_main_process() == (rank == 0)
        assert distributed.all_reduce_mean({"b": float(rank), "a": 10.0 * rank}) == {"a": 5.0, "b": 0.5}
        result = Trainer(train_config(PER_RANK_BATCH), out_dir).fit(make_model(), LinearData(), mean_mse)
        assert not isinstance(result.model, nn.parallel.DistributedDataParallel)
        torch.save(result.model.state_dict(), os.path.join(out_dir, f"weights-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_gloo_processes_match_one_process_on_the_whole_batch(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single = Trainer(train_config(WORLD * PER_RANK_BATCH), single_dir).fit(make_model(), LinearData(), mean_mse)
    # fork, after the single run: the children reuse the modules torch has imported by now instead of
    # importing them again (seconds each on 2 cores)
    mp.start_processes(_worker, args=(_free_port(), str(ddp_dir)), nprocs=WORLD, join=True, start_method="fork")

    rank0 = torch.load(ddp_dir / "weights-rank0.pt")
    rank1 = torch.load(ddp_dir / "weights-rank1.pt")
    for key, value in single.model.state_dict().items():
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(rank0["0.weight"], make_model().state_dict()["0.weight"])

    # only rank 0 wrote the log and checkpoints; the logged loss is the mean over ranks = the whole batch's loss
    assert sorted(p.name for p in ddp_dir.iterdir()) == ["final.pt", "last.pt", "metrics.jsonl", "weights-rank0.pt", "weights-rank1.pt"]
    ddp_log, single_log = read_metrics_log(ddp_dir / "metrics.jsonl"), read_metrics_log(single_dir / "metrics.jsonl")
    assert [r["step"] for r in ddp_log] == list(range(1, 9))
    np.testing.assert_allclose([r["loss"] for r in ddp_log], [r["loss"] for r in single_log], rtol=1e-5)


def test_single_process_is_a_no_op(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_distributed() == (0, 1, 0)
    assert distributed.is_main_process() and distributed.get_world_size() == 1
    assert distributed.all_reduce_mean({"loss": 2}) == {"loss": 2.0}
    assert distributed.gather_objects("x") == ["x"]


def test_missing_torchrun_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        distributed.init_distributed()
