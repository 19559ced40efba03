"""The training engine: determinism, exact resume, divergence, schedules, checkpoints, the model cache."""

from __future__ import annotations

import collections
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from poselib.engine import cache
from poselib.engine.checkpoint import load_checkpoint, save_checkpoint, trained_run
from poselib.engine.schedules import lr_factor
from poselib.engine.trainer import (
    EpochSampler,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    move_to_device,
    read_metrics_log,
)

N_SAMPLES, BATCH, EPOCHS = 24, 4, 3  # 6 steps per epoch, 18 in all


class NoisyRegression(torch.utils.data.Dataset):
    """Per-sample randomness from (seed, epoch, index), as the project's data sets do."""

    def __init__(self, n: int = N_SAMPLES, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        x = torch.from_numpy(rng.normal(size=4).astype(np.float32))
        return {"x": x, "y": x[:2].sum(0, keepdim=True) + 0.1 * float(rng.normal()), "meta": [index, "tag"]}


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))


def mse_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    pred = model(batch["x"])
    loss = ((pred - batch["y"]) ** 2).mean()
    return loss, {"pred_mean": pred.mean().item()}


def config(**overrides) -> TrainConfig:
    fields = dict(
        epochs=EPOCHS, batch_size=BATCH, optimizer="adamw", lr=0.01, weight_decay=0.01, schedule="warmup_linear",
        warmup_steps=3, grad_clip=1.0, log_every=1, checkpoint_every=4, seed=7, progress=False,
    )  # fmt: skip
    return TrainConfig(**{**fields, **overrides})


def failing_step(fail_at: int):
    """``mse_step`` that raises on its ``fail_at``-th call (an interrupt)."""
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt(f"interrupted at step {fail_at}")
        return mse_step(model, batch)

    return step


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = Trainer(config(), out).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0})
    return result


def test_fresh_runs_are_deterministic(uninterrupted, tmp_path):
    again = Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0})
    assert_same_weights(uninterrupted.model, again.model)
    assert again.steps == 18 and again.epochs == 3 and again.finished and not again.cached
    assert again.metrics["score"] == 1.0
    last_epoch_losses = [r["loss"] for r in read_metrics_log(again.log_path, "train") if r["epoch"] == 2]
    assert len(last_epoch_losses) == 6 and again.metrics["loss"] == pytest.approx(np.mean(last_epoch_losses))
    # and the run actually moved the weights away from their initialisation
    assert not torch.equal(make_model().state_dict()["0.weight"], again.model.state_dict()["0.weight"])
    assert not again.model.training


def test_another_seed_gives_other_weights(uninterrupted, tmp_path):
    other = Trainer(config(seed=8), tmp_path).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0})
    assert not torch.equal(other.model.state_dict()["0.weight"], uninterrupted.model.state_dict()["0.weight"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_after_interrupt_is_exact(uninterrupted, tmp_path, num_workers):
    cfg = config(num_workers=num_workers)
    val_fn = lambda m: {"score": 1.0}  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path).fit(make_model(), NoisyRegression(), failing_step(10), val_fn=val_fn)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["position"]["global_step"] == 8
    assert (saved["position"]["epoch"], saved["position"]["step_in_epoch"]) == (1, 2)  # mid-epoch
    assert [r["step"] for r in read_metrics_log(tmp_path / "metrics.jsonl", "train")] == list(range(1, 10))
    assert not (tmp_path / "final.pt").exists()

    resumed = Trainer(cfg, tmp_path).fit(make_model(seed=123), NoisyRegression(), mse_step, val_fn=val_fn)
    assert_same_weights(uninterrupted.model, resumed.model)
    assert resumed.steps == 18 and resumed.finished
    assert resumed.metrics["loss"] == pytest.approx(uninterrupted.metrics["loss"], abs=0, rel=1e-12)
    train_log = read_metrics_log(tmp_path / "metrics.jsonl", "train")
    assert [r["step"] for r in train_log] == list(range(1, 19))  # truncated to step 8, then no duplicates
    assert [r["loss"] for r in train_log] == [r["loss"] for r in read_metrics_log(uninterrupted.log_path, "train")]
    assert [(r["step"], r["epoch"]) for r in read_metrics_log(tmp_path / "metrics.jsonl", "val")] == [(6, 0), (12, 1), (18, 2)]


def test_stop_after_steps_at_an_epoch_end_then_resume(uninterrupted, tmp_path):
    stopped = Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0}, stop_after_steps=12)
    assert not stopped.finished and stopped.steps == 12
    assert not (tmp_path / "final.pt").exists()
    resumed = Trainer(config(), tmp_path).fit(make_model(seed=5), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0})
    assert_same_weights(uninterrupted.model, resumed.model)
    assert [r["step"] for r in read_metrics_log(tmp_path / "metrics.jsonl", "val")] == [6, 12, 18]


def test_finished_run_is_loaded_not_retrained(uninterrupted):
    def must_not_train(model, batch):
        raise AssertionError("a finished run was trained again")

    again = Trainer(config(), uninterrupted.out_dir).fit(make_model(seed=99), NoisyRegression(), must_not_train)
    assert again.cached and again.finished and again.steps == 18
    assert_same_weights(uninterrupted.model, again.model)
    assert again.metrics == pytest.approx(uninterrupted.metrics)


def test_resume_with_another_config_is_refused(tmp_path):
    Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(), mse_step, stop_after_steps=3)
    with pytest.raises(ValueError, match=r"lr: 0\.01 -> 0\.02"):
        Trainer(config(lr=0.02), tmp_path).fit(make_model(), NoisyRegression(), mse_step)
    # run-control fields may change
    result = Trainer(config(log_every=5, progress=False), tmp_path).fit(make_model(), NoisyRegression(), mse_step)
    assert result.finished and result.steps == 18


def test_resume_false_starts_over(uninterrupted, tmp_path):
    Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(), mse_step, stop_after_steps=5)
    fresh = Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"score": 1.0}, resume=False)
    assert_same_weights(uninterrupted.model, fresh.model)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        loss, logs = mse_step(model, batch)
        return (loss * float("nan") if calls["n"] == 5 else loss), {"heat": 3.5}

    with pytest.raises(TrainingDiverged, match=r"step 5 \(epoch 0.*'heat': 3\.5") as info:
        Trainer(config(checkpoint_every=2), tmp_path).fit(make_model(), NoisyRegression(), step)
    assert (info.value.step, info.value.epoch) == (5, 0) and math.isnan(info.value.loss)
    assert "last.pt (step 4)" in str(info.value)
    assert load_checkpoint(tmp_path / "last.pt")["position"]["global_step"] == 4
    assert calls["n"] == 5  # stopped at once


def test_warmup_linear_learning_rates_in_the_log(tmp_path):
    result = Trainer(config(lr=0.3), tmp_path).fit(make_model(), NoisyRegression(), mse_step)
    lrs = [r["lr"] for r in read_metrics_log(result.log_path, "train")]
    expected = [0.1, 0.2, 0.3] + [0.3 * (18 - s) / 15 for s in range(3, 18)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(0.02)


def test_max_steps_caps_the_run_and_the_schedule(tmp_path):
    result = Trainer(config(lr=0.3, max_steps=8), tmp_path).fit(make_model(), NoisyRegression(), mse_step)
    lrs = [r["lr"] for r in read_metrics_log(result.log_path, "train")]
    assert result.steps == 8 and result.finished and (tmp_path / "final.pt").is_file()
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.24, 0.18, 0.12, 0.06])


def test_step_schedule_milestones_are_epochs(tmp_path):
    cfg = config(schedule="step", warmup_steps=0, milestones=[1, 2], gamma=0.1, lr=0.5, optimizer="sgd")
    result = Trainer(cfg, tmp_path).fit(make_model(), NoisyRegression(), mse_step)
    by_epoch = collections.defaultdict(set)
    for r in read_metrics_log(result.log_path, "train"):
        by_epoch[r["epoch"]].add(round(r["lr"], 12))
    assert dict(by_epoch) == {0: {0.5}, 1: {0.05}, 2: {0.005}}


def test_plateau_schedule_follows_the_validation_metric(tmp_path):
    cfg = config(schedule="plateau", warmup_steps=0, plateau_metric="AP", mode="max", patience=0, factor=0.5, epochs=4, lr=0.1)
    result = Trainer(cfg, tmp_path).fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"AP": 0.5})
    first_lr = {}
    for r in read_metrics_log(result.log_path, "train"):
        first_lr.setdefault(r["epoch"], r["lr"])
    assert first_lr == pytest.approx({0: 0.1, 1: 0.1, 2: 0.05, 3: 0.025})

    with pytest.raises(KeyError, match="AP"):
        Trainer(cfg, tmp_path / "other").fit(make_model(), NoisyRegression(), mse_step, val_fn=lambda m: {"loss": 1.0})
    with pytest.raises(ValueError, match="no val_fn"):
        Trainer(cfg, tmp_path / "other2").fit(make_model(), NoisyRegression(), mse_step)


def test_lr_factor_known_values():
    common = dict(steps_per_epoch=3, total_steps=12)
    assert [lr_factor(s, schedule="warmup_step", warmup_steps=2, milestones=[2], gamma=0.5, **common) for s in range(8)] == [
        0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5,
    ]  # fmt: skip
    assert lr_factor(11, schedule="warmup_linear", warmup_steps=2, **common) == pytest.approx(0.1)
    assert lr_factor(12, schedule="warmup_linear", warmup_steps=2, **common) == 0.0
    assert lr_factor(100, schedule="constant", **common) == 1.0


def test_gradient_clipping_bounds_the_update(tmp_path):
    cfg = config(optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant", warmup_steps=0, lr=1.0, grad_clip=0.01, max_steps=1)
    model = make_model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])

    def big_loss(m, batch):
        loss, logs = mse_step(m, batch)
        return 1000.0 * loss, logs

    result = Trainer(cfg, tmp_path).fit(model, NoisyRegression(), big_loss)
    after = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-4)


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="optimizer 'rmsprop' is not one of adam, adamw, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="plateau_metric"):
        TrainConfig(schedule="plateau")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(schedule="warmup_linear")
    assert TrainConfig(milestones=[3, 5]).milestones == (3, 5)
    assert TrainConfig.from_dict(TrainConfig(lr=0.5).to_dict()) == TrainConfig(lr=0.5)


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="3 samples"):
        Trainer(config(), tmp_path).fit(make_model(), NoisyRegression(n=3), mse_step)


def test_epoch_sampler_shards_one_permutation():
    n, per_rank_batch, world = 20, 3, 2
    single = EpochSampler(range(n), seed=1)
    single.set_epoch(4)
    single_order = list(single)
    assert sorted(single_order) == list(range(n))
    ranks = []
    for rank in range(world):
        sampler = EpochSampler(range(n), num_replicas=world, rank=rank, seed=1)
        sampler.set_epoch(4)
        ranks.append(list(sampler))
    assert len(ranks[0]) == len(ranks[1]) == 10 and not set(ranks[0]) & set(ranks[1])
    for j in range(n // (per_rank_batch * world)):
        together = set(ranks[0][j * 3 : j * 3 + 3]) | set(ranks[1][j * 3 : j * 3 + 3])
        assert together == set(single_order[j * 6 : j * 6 + 6])
    single.set_epoch(5)
    assert list(single) != single_order
    single.set_epoch(4)
    single.set_range(6, 9)
    assert list(single) == single_order[6:9] and len(single) == 3


def test_move_to_device_reaches_nested_tensors():
    Pair = collections.namedtuple("Pair", "a b")
    batch = {"img": torch.zeros(2, 3, 4, 4), "parts": [torch.ones(2), (torch.ones(1), "x")], "pair": Pair(torch.ones(1), 5), "id": 7}
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["img"].device.type == "meta" and moved["parts"][0].device.type == "meta"
    assert moved["parts"][1][0].device.type == "meta" and moved["parts"][1][1] == "x"
    assert isinstance(moved["pair"], Pair) and moved["pair"].a.device.type == "meta" and moved["pair"].b == 5
    assert moved["id"] == 7
    assert move_to_device(torch.zeros(2, 3, 4, 4), torch.device("cpu"), channels_last=True).is_contiguous(memory_format=torch.channels_last)


class TinyImages(torch.utils.data.Dataset):
    """4-D image batches, so that ``channels_last`` has something to reorder."""

    def __len__(self) -> int:
        return N_SAMPLES

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index)
        image = torch.from_numpy(rng.normal(size=(3, 8, 8)).astype(np.float32))
        return {"image": image, "target": image.mean(0, keepdim=True)}


def conv_step(channels_last: bool):
    """An MSE step that also checks the memory format the engine hands it."""

    def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        assert batch["image"].is_contiguous(memory_format=torch.channels_last) == channels_last
        return ((model(batch["image"]) - batch["target"]) ** 2).mean(), {}

    return step


@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_on_the_cpu_trains_the_same_model(tmp_path, channels_last):
    def conv_model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))

    # SGD, because Adam turns rounding noise in near-zero gradients into full-size steps of either sign
    sgd = dict(optimizer="sgd", weight_decay=0.0)
    step = conv_step(channels_last)
    result = Trainer(config(channels_last=channels_last, **sgd), tmp_path / "a").fit(conv_model(), TinyImages(), step)
    assert result.model[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    again = Trainer(config(channels_last=channels_last, **sgd), tmp_path / "b").fit(conv_model(), TinyImages(), step)
    assert_same_weights(result.model, again.model)  # still deterministic on the CPU
    reference = Trainer(config(**sgd), tmp_path / "c").fit(conv_model(), TinyImages(), conv_step(False))
    assert not torch.equal(reference.model[0].weight, conv_model()[0].weight)
    for key, value in reference.model.state_dict().items():  # the memory format changes rounding, not the model
        torch.testing.assert_close(result.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_text_write_is_atomic(tmp_path, monkeypatch):
    from poselib.engine.checkpoint import write_text_atomic

    path = write_text_atomic(tmp_path / "sub" / "record.json", "old")
    assert path.read_text() == "old"
    real_open = open

    class TornFile:
        def __init__(self, name, mode):
            self.f = real_open(name, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:1])
            raise OSError("disk full")

    monkeypatch.setattr("builtins.open", TornFile)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}})

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind
    path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_config_hash_is_sorted_compact_json_sha256():
    expected = hashlib.sha256(b'{"a":[1,2],"b":{"c":0.5}}').hexdigest()[:12]
    assert cache.config_hash({"b": {"c": 0.5}, "a": (1, 2)}) == expected
    assert cache.config_hash({"a": [1, 2], "b": {"c": 0.5}}) == expected
    assert cache.config_hash({"a": [1, 2], "b": {"c": 0.25}}) != expected


def test_run_dir_reuses_the_trained_model(tmp_path):
    recipe = {"model": "mlp", "train": config().to_dict()}
    folder = cache.run_dir("mlp", recipe, root=tmp_path)
    assert folder == tmp_path / "runs" / f"mlp-{cache.config_hash(recipe)}"
    assert json.loads((folder / "config.json").read_text()) == recipe
    assert not cache.is_trained(folder)
    first = Trainer(config(), folder).fit(make_model(), NoisyRegression(), mse_step)
    assert cache.is_trained(folder)
    again_folder = cache.run_dir("mlp", dict(reversed(list(recipe.items()))), root=tmp_path)
    assert again_folder == folder
    again = Trainer(config(), again_folder).fit(make_model(3), NoisyRegression(), failing_step(1))
    assert again.cached
    assert_same_weights(first.model, again.model)
    with pytest.raises(ValueError, match="plain folder name"):
        cache.run_dir("../x", recipe, root=tmp_path)


def test_trained_run_finds_weights_and_config_and_names_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="final.pt"):
        trained_run(run)
    save_checkpoint(run / "final.pt", {"model": {}})
    with pytest.raises(FileNotFoundError, match="config.json"):
        trained_run(run)
    (run / "config.json").write_text(json.dumps({"recipe": {"name": "x"}}))
    assert trained_run(run) == (run / "final.pt", {"recipe": {"name": "x"}})
    save_checkpoint(run / "last.pt", {"model": {}})
    assert trained_run(run / "last.pt")[0] == run / "last.pt"
