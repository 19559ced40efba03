"""The small presets' pretrained start: chapter 0.4's backbone copied into Parts I, III and IV's networks."""

from __future__ import annotations

import json

import pytest
import torch

from poselib.methods import msa_rcnn, mspn, multiposenet, pretraining, rsn, topdown
from poselib.models import build_model
from poselib.models.backbones import resnet


@pytest.fixture(scope="module")
def smoke_backbone(tmp_path_factory):
    """Chapter 0.4's smoke model (seconds to train) in a model cache of this module's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSELIB_CACHE", str(tmp_path_factory.mktemp("pretraining") / "cache"))
        yield pretraining.simple_baseline_backbone("smoke", progress=False)


def _same(module: torch.nn.Module, weights: pretraining.BackboneWeights) -> bool:
    state = module.state_dict()
    return state.keys() == weights.state.keys() and all(torch.equal(state[k], weights.state[k]) for k in state)


def test_small_presets_start_from_chapter_0_4_and_the_large_ones_do_not() -> None:
    assert [multiposenet.recipe(p).backbone_from for p in ("smoke", "cpu", "gpu", "coco")] == ["smoke", "cpu", None, None]
    assert [msa_rcnn.recipe(p).backbone_from for p in ("smoke", "cpu", "gpu", "coco")] == ["smoke", "cpu", None, None]
    # every rung of the ladder trains from the same start
    assert {rung.recipe.backbone_from for rung in msa_rcnn.ladder("cpu")} == {"cpu"}
    # MSPN's ResNet stages too; hourglasses and RSN train from scratch, as in their papers; coco starts from ImageNet
    assert [mspn.recipe(p).backbone_from for p in ("smoke", "cpu", "gpu", "coco")] == ["smoke", "cpu", None, None]
    assert {mspn.experiment_recipe(name, "cpu").backbone_from for name in mspn.TRAINED_AT["cpu"]} == {"cpu"}
    assert mspn.recipe("cpu", model="hourglass").backbone_from is None
    assert rsn.recipe("cpu").backbone_from is None and rsn.recipe("cpu", family="resnet").backbone_from is None
    assert mspn.recipe("coco").model_kwargs["pretrained"] and "pretrained" not in mspn.recipe("gpu").model_kwargs


def test_both_networks_start_from_the_simple_baseline_backbone(smoke_backbone) -> None:
    assert smoke_backbone.source.startswith("simplebaseline-")
    # read once per process and model cache: every network built after the first reuses the same weights
    assert pretraining.simple_baseline_backbone("smoke", progress=False) is smoke_backbone
    network, source = multiposenet.initial_network(multiposenet.recipe("smoke"), progress=False)
    assert source == smoke_backbone.source and _same(network.backbone, smoke_backbone)
    detector, source = msa_rcnn.initial_model(msa_rcnn.recipe("smoke", "baseline"), progress=False)
    assert source == smoke_backbone.source and _same(detector.backbone.body, smoke_backbone)

    scratch, source = multiposenet.initial_network(multiposenet.recipe("smoke", backbone_from=None))
    assert source is None and not _same(scratch.backbone, smoke_backbone)
    # the rest of the network is the seed's own initialisation either way
    assert torch.equal(scratch.keypoint_subnet.predict.weight, network.keypoint_subnet.predict.weight)


def test_every_seed_starts_from_the_same_source(smoke_backbone) -> None:
    """Like ImageNet weights: a seed-1 network starts from chapter 0.4's seed-0 model (no second model trained)."""
    assert smoke_backbone.source == pretraining.simple_baseline_backbone("smoke", seed=pretraining.SOURCE_SEED,
                                                                         progress=False).source
    _, source = multiposenet.initial_network(multiposenet.recipe("smoke"), seed=1, progress=False)
    assert source == smoke_backbone.source


def test_mspn_starts_the_stem_and_every_stage_from_the_source(smoke_backbone) -> None:
    recipe = mspn.recipe("smoke", num_stages=2)
    network = build_model(recipe.model, **recipe.model_kwargs)
    pretraining.load_backbone(network, smoke_backbone)
    state = network.state_dict()
    for key, value in smoke_backbone.state.items():
        head, _, rest = key.partition(".")
        places = [key] if head == "stem" else [f"stages.{s}.down.layers.{int(head[-1]) - 1}.{rest}" for s in (0, 1)]
        assert all(torch.equal(state[place], value) for place in places), key
    # an RSN has no ResNet stages: refused, naming the source
    rsn_recipe = rsn.recipe("smoke")
    with pytest.raises(ValueError, match=smoke_backbone.source):
        pretraining.load_backbone(build_model(rsn_recipe.model, **rsn_recipe.model_kwargs), smoke_backbone)


def test_the_source_keys_the_cached_top_down_model(smoke_backbone) -> None:
    recipe = mspn.recipe("smoke", train={"max_steps": 1}, val_every_epoch=False)
    trained = topdown.train(recipe, progress=False)
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert config["backbone_source"] == smoke_backbone.source and config["recipe"]["backbone_from"] == "smoke"
    scratch = topdown.train(mspn.recipe("smoke", train={"max_steps": 1}, val_every_epoch=False, backbone_from=None),
                            progress=False)
    # a recipe without a start keeps the key it had before the field existed
    assert scratch.run_dir != trained.run_dir
    scratch_config = json.loads((scratch.run_dir / "config.json").read_text())
    assert set(scratch_config) == {"recipe", "seed", "train_data_sha256"} and "backbone_from" not in scratch_config["recipe"]
    # the folder names are known without training (what archived records are checked against), start included
    assert pretraining.backbone_source("smoke") == smoke_backbone.source
    assert topdown.run_name(recipe) == trained.run_dir.name and topdown.run_name(scratch.recipe) == scratch.run_dir.name
    assert topdown.run_name(recipe, seed=1) != trained.run_dir.name


def test_the_source_keys_the_cached_model(smoke_backbone) -> None:
    recipe = multiposenet.recipe("smoke", train={"max_steps": 1})
    trained = multiposenet.train_keypoints(recipe, progress=False)
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert config["backbone_source"] == smoke_backbone.source
    scratch = multiposenet.train_keypoints(multiposenet.recipe("smoke", train={"max_steps": 1}, backbone_from=None), progress=False)
    assert scratch.run_dir != trained.run_dir


def test_a_backbone_of_another_depth_is_refused_naming_its_source() -> None:
    weights = pretraining.BackboneWeights(resnet(18, width=8).state_dict(), "simplebaseline-0123abcd")
    with pytest.raises(ValueError, match="simplebaseline-0123abcd"):
        pretraining.load_backbone(resnet(34, width=8), weights)
    with pytest.raises(ValueError, match="depth and width"):
        pretraining.load_backbone(resnet(18, width=16), weights)
