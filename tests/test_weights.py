"""Official checkpoints import exactly (nasseg.weights, nasseg weights import).

The fixtures (tests/fixtures/weights, made as tests/fixtures/README.md says) hold each official network's
key list and, for nine of them, an input and the official network's output with the weights that
``tests.synthetic_weights`` rebuilds from that key list.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from nasseg import genome as G
from nasseg import presets, weights
from nasseg.build import build
from nasseg.cli import main
from nasseg.weights import WeightsError, import_checkpoint
from tests.synthetic_weights import FIXTURES, load_spec, synthetic_checkpoint

NUMERIC = ["regseg", "erfnet", "lednet", "espnet", "fasternet_t0", "stdc1_seg", "ghostnet_1x", "shufflenetv2_1x",
           "mobilenetv3_large", "cgnet", "fast_scnn", "enet",
           "seaformer_tiny", "topformer_tiny", "ddrnet_23_slim", "pidnet_s", "pidnet_l",
           "bisenetv1", "bisenetv2"]
TOL = 1e-5


def _network(name: str, state: dict, num_classes: int) -> torch.nn.Module:
    net = build(presets.get(name).genome, num_classes).eval()
    net.load_state_dict(state, strict=True)
    return net


# -------------------------------------------------------------------------------- the mappings
def test_every_preset_with_official_pytorch_code_has_a_plan_and_a_key_fixture():
    assert weights.names() == sorted(["regseg", "erfnet", "lednet", "espnet", "espnet_c", "fasternet_t0",
                                      "fasternet_t1", "fasternet_t2", "stdc1_seg", "stdc2_seg", "ghostnet_1x",
                                      "shufflenetv2_1x", "mobilenetv3_large", "cgnet", "fast_scnn", "enet",
           "seaformer_tiny", "topformer_tiny", "ddrnet_23_slim", "ddrnet_23", "pidnet_s", "pidnet_m", "pidnet_l",
           "bisenetv1", "bisenetv2"])
    for name in weights.names():
        assert (FIXTURES / f"{name}.json").exists(), name


@pytest.mark.parametrize("name", weights.names())
def test_every_official_tensor_lands_in_one_place(name):
    spec = load_spec(name)
    ck = synthetic_checkpoint(spec)
    state, rep = import_checkpoint(name, ck)
    loaded = [o for o, _ in rep.loaded]
    assert len(loaded) == len(set(loaded))  # no official tensor used twice
    accounted = set(loaded) | {k for k, _ in rep.aliases} | {k for k, _, _ in rep.unused}
    assert accounted == set(ck) and len(loaded) + len(rep.aliases) + len(rep.unused) == len(ck)
    for official, ours in rep.loaded:  # values moved untouched
        assert torch.equal(state[ours], ck[official]), (official, ours)
    net = build(presets.get(name).genome, rep.num_classes)
    assert list(state) == list(net.state_dict())
    fresh = {k for k, _ in rep.fresh}
    assert all(k.startswith("train_heads.") for k in fresh)  # only training-only heads may be initialised here
    assert set(state) == {k for _, k in rep.loaded} | fresh | set(rep.zeroed)


@pytest.mark.parametrize("name", NUMERIC)
def test_imported_preset_reproduces_the_official_output(name):
    f = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    state, rep = import_checkpoint(name, synthetic_checkpoint(load_spec(name)))
    with torch.no_grad():
        y = _network(name, state, rep.num_classes)(f["input"])
    assert y.shape == f["output"].shape
    assert (y - f["output"]).abs().max().item() <= TOL
    assert f["output"].std() > 0.1  # the comparison is not between two near-zero maps


def test_espnet_in_the_old_level3_order_does_not_match_the_official_output():
    """The old ESPNet genome (level 3 concatenated last-first) is a permutation of the official network."""
    f = torch.load(FIXTURES / "espnet.pt", weights_only=True)
    state, rep = import_checkpoint("espnet", synthetic_checkpoint(load_spec("espnet")))
    old = G.parse("v1|conv1x16s2(act=prelu,bn_eps=0.001)!inject/esp3x64s2!inject!cat/esp9x128s2!cat|"
                  "espnet_decoder@0,1,2|-")
    net = build(old, rep.num_classes).eval()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert (net(f["input"]) - f["output"]).abs().max().item() > 100 * TOL


def test_class_count_comes_from_the_checkpoint():
    state, rep = import_checkpoint("regseg", synthetic_checkpoint(load_spec("regseg")))
    assert rep.num_classes == 19 and state["decoder.classifier.weight"].shape[0] == 19
    _, rep = import_checkpoint("espnet", synthetic_checkpoint(load_spec("espnet")))
    assert rep.num_classes == 20


def test_stdc_report_names_what_has_no_place_and_what_is_initialised_here():
    _, rep = import_checkpoint("stdc1_seg", synthetic_checkpoint(load_spec("stdc1_seg")))
    unused = {k.rsplit(".", 2)[0] if "backbone" in k else k.split(".")[0] for k, _, _ in rep.unused}
    assert {"cp.backbone.conv_last", "cp.backbone", "conv_out16", "conv_out32", "conv_out_sp16", "conv_out_sp4",
            "conv_out_sp2"} <= unused
    assert {k for k, _, _ in rep.unused if k.startswith("cp.backbone.") and "conv_last" not in k} == {
        "cp.backbone.fc.weight", "cp.backbone.linear.weight", *(f"cp.backbone.bn.{t}" for t in (
            "weight", "bias", "running_mean", "running_var", "num_batches_tracked"))}
    assert len(rep.aliases) == 174 and all(".x" in a and ".features." in b for a, b in rep.aliases)
    assert {k.split(".")[1] for k, _ in rep.fresh} == {"0", "1"}  # the two aux heads, not the detail head
    assert ("conv_out_sp8.conv_out.weight", "train_heads.2.conv_out.weight") in rep.loaded
    assert rep.zeroed and all(k.endswith("num_batches_tracked") for k in rep.zeroed)  # InPlaceABN keeps none
    text = "\n".join(rep.lines())
    assert "cp.backbone.linear.weight [1000, 1024]" in text and "ImageNet classifier" in text
    assert "initialised here" in text


def test_erfnet_and_lednet_list_their_encoder_only_classifier():
    for name in ("erfnet", "lednet"):
        _, rep = import_checkpoint(name, synthetic_checkpoint(load_spec(name)))
        assert [k for k, _, _ in rep.unused] == ["encoder.output_conv.weight", "encoder.output_conv.bias"]



@pytest.mark.parametrize("name", ["ddrnet_23_slim", "pidnet_s", "pidnet_l"])
def test_multi_branch_presets_load_their_training_heads_and_branch_modules(name):
    """The official training heads tap the same features as the preset's (DDRNet's seghead_extra, PIDNet's seghead_p
    and seghead_d): they load, nothing is initialised here; branch blocks and links take the official tensors."""
    state, rep = import_checkpoint(name, synthetic_checkpoint(load_spec(name)))
    assert not rep.fresh and not rep.unused and not rep.zeroed
    source = {ours: official for official, ours in rep.loaded}
    assert source["branches.0.stages.0.blocks.0.conv1.weight"] == "layer3_.0.conv1.weight"
    assert source["branches.0.links.0.compress.0.weight"] == "compression3.0.weight"
    assert source["stages.0.blocks.0.layers.0.bias"] == "conv1.0.bias"  # the stem's conv keeps its bias
    if name.startswith("ddrnet"):
        assert source["branches.0.links.1.down.3.weight"] == "down4.3.weight"
        assert source["train_heads.0.pre.bn.weight"] == "seghead_extra.bn1.weight"
    else:
        assert source["branches.0.links.1.pag.f_y.conv.weight"] == "pag4.f_y.0.weight"
        assert source["branches.1.links.0.diff.0.weight"] == "diff3.0.weight"
        assert source["branches.1.stages.2.blocks.0.conv3.weight"] == "layer5_d.0.conv3.weight"
        assert source["train_heads.0.conv_out.bias"] == "seghead_p.conv2.bias"
        assert source["train_heads.1.conv_out.bias"] == "seghead_d.conv2.bias"
        assert state["train_heads.1.conv_out.weight"].shape[0] == 1  # the boundary head


def test_pidnet_checkpoint_saved_from_its_training_wrapper_imports():
    """PIDNet's released checkpoints are its FullModel's state: the network under ``model.`` beside the losses'
    buffers (tools/custom.py cuts the prefix); the same tensors land, the loss buffer is listed unused."""
    ck = synthetic_checkpoint(load_spec("pidnet_s"))
    plain, _ = import_checkpoint("pidnet_s", ck)
    wrapped = {f"model.{k}": v for k, v in ck.items()} | {"sem_loss.criterion.weight": torch.ones(19)}
    state, rep = import_checkpoint("pidnet_s", {"state_dict": wrapped})
    assert state.keys() == plain.keys() and all(torch.equal(state[k], plain[k]) for k in plain)
    assert [k for k, _, _ in rep.unused] == ["sem_loss.criterion.weight"]
    assert "training wrapper" in "\n".join(rep.lines())


# ------------------------------------------------------------------------------ checkpoint forms
def test_wrapped_and_prefixed_checkpoints_import_the_same():
    ck = synthetic_checkpoint(load_spec("espnet"))
    plain, _ = import_checkpoint("espnet", ck)
    prefixed = {f"module.{k}": v for k, v in ck.items()}
    for wrapped in ({"state_dict": ck}, {"model": ck, "epoch": 3}, prefixed, {"state_dict": prefixed}):
        state, _ = import_checkpoint("espnet", wrapped)
        assert state.keys() == plain.keys() and all(torch.equal(state[k], plain[k]) for k in plain)


def test_half_precision_checkpoint_is_cast_and_said():
    ck = {k: v.half() if v.is_floating_point() else v for k, v in synthetic_checkpoint(load_spec("espnet")).items()}
    state, rep = import_checkpoint("espnet", ck)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert rep.cast and "cast to float32" in "\n".join(rep.lines())


def test_missing_batchnorm_counters_are_zeroed():
    ck = {k: v for k, v in synthetic_checkpoint(load_spec("espnet")).items() if "num_batches_tracked" not in k}
    state, rep = import_checkpoint("espnet", ck)  # as in the released ESPNet checkpoints (PyTorch 0.3)
    assert len(rep.zeroed) == 21 and all(int(state[k]) == 0 for k in rep.zeroed)


# ---------------------------------------------------------------------------------- bad input
def test_checkpoint_of_another_network_names_the_first_key_that_does_not_fit():
    with pytest.raises(WeightsError) as e:
        import_checkpoint("lednet", synthetic_checkpoint(load_spec("erfnet")))
    msg = str(e.value)
    assert "does not fit preset lednet" in msg and "encoder.initial_block.conv.weight [13, 3, 3, 3]" in msg
    with pytest.raises(WeightsError, match=r"stem\.conv\.weight \[32, 3, 3, 3\] has no place in preset espnet"):
        import_checkpoint("espnet", synthetic_checkpoint(load_spec("regseg")))
    with pytest.raises(WeightsError, match=r"patch_embed\.proj\.weight \[64, 3, 4, 4\] does not fit"):
        import_checkpoint("fasternet_t0", synthetic_checkpoint(load_spec("fasternet_t1")))


def test_checkpoint_missing_a_block_names_what_is_missing():
    ck = {k: v for k, v in synthetic_checkpoint(load_spec("regseg")).items() if not k.startswith("body.stage16.5.")}
    with pytest.raises(WeightsError, match=r"nothing for stages\.3\.blocks\.5\.conv1\.weight \[256, 256, 1, 1\] "
                                           r"\(looked under official body\.stage16\.5\.\*\)"):
        import_checkpoint("regseg", ck)


def test_preset_without_official_pytorch_code_is_refused():
    with pytest.raises(WeightsError, match="dwrseg.*no official PyTorch checkpoint.*espnet"):
        import_checkpoint("dwrseg", {"a": torch.zeros(1)})


@pytest.mark.parametrize("bad,needle", [
    ({}, "empty mapping"),
    ({"state_dict": {"a": torch.zeros(1), "b": "text"}}, "entry 'b' holds a str"),
    ([torch.zeros(1)], "holds a list"),
])
def test_mappings_that_are_not_state_dicts(bad, needle):
    with pytest.raises(WeightsError, match=needle):
        import_checkpoint("espnet", bad)


class _NotATensor:
    pass


def _bad_files(tmp: os.PathLike) -> dict[str, tuple[str, list[str]]]:
    """case -> (path, needles of the one-line message)"""
    good = os.path.join(tmp, "good.pt")
    torch.save(synthetic_checkpoint(load_spec("espnet")), good)
    data = open(good, "rb").read()
    truncated = os.path.join(tmp, "truncated.pt")
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    objects = os.path.join(tmp, "objects.pt")
    with open(objects, "wb") as f:
        pickle.dump({"net": _NotATensor()}, f, protocol=2)
    module = os.path.join(tmp, "module.pt")
    torch.save(torch.nn.Linear(2, 2), module)
    text = os.path.join(tmp, "text.pt")
    with open(text, "w") as f:
        f.write("not a checkpoint\n")
    return {
        "truncated file": (truncated, ["truncated.pt", "truncated or corrupt"]),
        "pickle of objects": (objects, ["objects.pt", "not a checkpoint of tensors", "weights_only=True"]),
        "pickled module": (module, ["module.pt", "torch.nn.modules.linear.Linear"]),
        "text file": (text, ["text.pt", "not a PyTorch checkpoint"]),
        "missing file": (os.path.join(tmp, "missing.pt"), ["missing.pt", "no such file"]),
        "another network": (good, ["does not fit preset regseg", "encoder.level1.conv.weight [16, 3, 3, 3]"]),
    }


def _one_line(stderr: str, needles: list[str]) -> None:
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasseg: error: "), stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


CASES = ["truncated file", "pickle of objects", "pickled module", "text file", "missing file", "another network"]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys, case):
    path, needles = _bad_files(tmp_path)[case]
    out = tmp_path / "out.pt"
    assert main(["weights", "import", "regseg", path, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, needles)
    assert not out.exists()


@pytest.mark.parametrize("case", ["truncated file", "pickle of objects", "another network"])
def test_bad_checkpoint_as_a_subprocess(tmp_path, case):
    path, needles = _bad_files(tmp_path)[case]
    res = subprocess.run([sys.executable, "-m", "nasseg", "weights", "import", "regseg", path, "--out",
                          str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    _one_line(res.stderr, needles)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_writes_a_state_dict_that_loads_strict_with_weights_only(tmp_path, capsys):
    ckpt = tmp_path / "espnet_official.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in synthetic_checkpoint(load_spec("espnet")).items()}},
               ckpt)
    out = tmp_path / "espnet_nasseg.pt"
    assert main(["weights", "import", "espnet", str(ckpt), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "espnet: 210 tensors loaded" in text and "20 classes" in text and f"wrote {out}" in text
    f = torch.load(FIXTURES / "espnet.pt", weights_only=True)
    net = _network("espnet", torch.load(out, weights_only=True), 20)
    with torch.no_grad():
        assert (net(f["input"]) - f["output"]).abs().max().item() <= TOL
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_lists_unused_tensors(tmp_path, capsys):
    ckpt = tmp_path / "erfnet.pth"
    torch.save(synthetic_checkpoint(load_spec("erfnet")), ckpt)
    assert main(["weights", "import", "erfnet", str(ckpt), "--out", str(tmp_path / "o.pt")]) == 0
    text = capsys.readouterr().out
    assert "unused: 2 official tensors" in text and "encoder.output_conv.weight [20, 128, 1, 1]" in text


def test_cli_help_names_every_preset_that_imports():
    from nasseg.cli.common import Parser
    from nasseg.cli.weights import add_arguments

    p = Parser(prog="nasseg weights")
    add_arguments(p)
    text = " ".join(p.format_help().split()).replace("fasternet_t0/t1/t2", "fasternet_t0 fasternet_t1 fasternet_t2")
    assert all(n in text for n in weights.names())


def test_cli_refuses_an_unknown_preset_and_a_missing_out_folder(tmp_path, capsys):
    ckpt = tmp_path / "x.pth"
    torch.save({"a": torch.zeros(1)}, ckpt)
    assert main(["weights", "import", "regsg", str(ckpt), "--out", str(tmp_path / "o.pt")]) == 2
    _one_line(capsys.readouterr().err, ["unknown preset 'regsg'", "did you mean regseg"])
    assert main(["weights", "import", "regseg", str(ckpt), "--out", str(tmp_path / "no" / "o.pt")]) == 2
    _one_line(capsys.readouterr().err, ["--out", "does not exist"])


def test_an_imagenet_backbone_checkpoint_fills_the_encoder_and_warm_starts_a_search_genome(tmp_path):
    """STDCNet813's own checkpoint (what STDCNet.init_weight loads: the module's keys, in ``state_dict``) imports
    into stdc1_seg's encoder; decoder and heads stay as built and are listed; its ImageNet classifier is unused."""
    from nasseg.weights import preset_state, shared_stages, stage_tensors

    full = synthetic_checkpoint(load_spec("stdc1_seg"))
    backbone = {k[len("cp.backbone."):]: v for k, v in full.items() if k.startswith("cp.backbone.")}
    path = tmp_path / "STDCNet813M.tar"
    torch.save({"state_dict": backbone}, path)
    state, rep = import_checkpoint("stdc1_seg", path)
    ref, _ = import_checkpoint("stdc1_seg", full)
    enc = [k for k in ref if k.startswith("stages.")]
    assert enc and all(torch.equal(state[k], ref[k]) for k in enc)
    assert {k for _, k in rep.loaded} == set(enc)
    assert any(k.startswith("decoder.") for k, _ in rep.fresh) and any("conv_last" in k for k, _, _ in rep.unused)
    text = "\n".join(rep.lines())
    assert "the network outside the backbone" in text and "ImageNet classifier" in text
    stages, _ = preset_state("stdc1_seg", path)
    pg = presets.get("stdc1_seg").genome
    assert stage_tensors(stages, shared_stages(pg, pg)).keys() == {k for k in enc}


def test_erfnets_imagenet_encoder_checkpoint_fills_the_encoder():
    """What train/main.py reads for --pretrainedEncoder: DataParallel(ERFNet_imagenet(1000)) under state_dict,
    keys module.features.encoder.* and module.classifier.linear.*."""
    full = synthetic_checkpoint(load_spec("erfnet"))
    enc = {f"module.features.{k}": v for k, v in full.items() if k.startswith("encoder.")
           and not k.startswith("encoder.output_conv")}
    enc["module.classifier.linear.weight"] = torch.zeros(1000, 128)
    enc["module.classifier.linear.bias"] = torch.zeros(1000)
    state, rep = import_checkpoint("erfnet", {"state_dict": enc})
    ref, _ = import_checkpoint("erfnet", full)
    stages = [k for k in ref if k.startswith("stages.")]
    assert stages and all(torch.equal(state[k], ref[k]) for k in stages)
    assert any(k.startswith("decoder.") for k, _ in rep.fresh)
    assert {k for k, _, _ in rep.unused} == {"classifier.linear.weight", "classifier.linear.bias"}


def test_espnet_c_imports_espnets_encoder_keys():
    """ESPNet-C is the official ESPNet_Encoder: the same modules as ESPNet's ``encoder.*`` without the prefix
    (sacmehta/ESPNet afe71c3 train/Model.py).  Run beside the official module with these weights, the imported
    preset's logits equal the official 1/8 logits bilinearly resized to the input (max diff 0.0 in float32);
    the official code is not in the repository, so this test checks the mapping and the counts."""
    full = synthetic_checkpoint(load_spec("espnet"))
    ck = {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")}
    state, rep = import_checkpoint("espnet_c", {"state_dict": ck})
    assert rep.num_classes == 20 and not rep.unused and not rep.fresh
    assert {k for k, _ in rep.loaded} == set(ck)
    assert load_spec("espnet_c")["keys"] == [[k, list(v.shape), str(v.dtype).removeprefix("torch.")]
                                             for k, v in ck.items()]  # the official ESPNet_Encoder's own keys
    net = build(presets.get("espnet_c").genome, 20)
    net.load_state_dict(state, strict=True)
    assert torch.equal(state["decoder.classifier.weight"], ck["classifier.conv.weight"])
    assert sum(p.numel() for p in net.parameters()) == presets.get("espnet_c").official_params == 349_449


def test_fast_scnn_checkpoint_trained_with_aux_lists_its_auxiliary_head():
    """Tramac's FastSCNN(19, aux=True) adds ``auxlayer`` (3x3 conv 64->32, BN, ReLU, Dropout, 1x1 conv -> C);
    the preset has no auxiliary head, so those tensors are reported unused and the rest imports unchanged."""
    spec = load_spec("fast_scnn")
    aux = [["auxlayer.0.weight", [32, 64, 3, 3], "float32"], ["auxlayer.1.weight", [32], "float32"],
           ["auxlayer.1.bias", [32], "float32"], ["auxlayer.1.running_mean", [32], "float32"],
           ["auxlayer.1.running_var", [32], "float32"], ["auxlayer.1.num_batches_tracked", [], "int64"],
           ["auxlayer.4.weight", [19, 32, 1, 1], "float32"], ["auxlayer.4.bias", [19], "float32"]]
    plain, _ = import_checkpoint("fast_scnn", synthetic_checkpoint(spec))
    state, rep = import_checkpoint("fast_scnn", synthetic_checkpoint({**spec, "keys": spec["keys"] + aux}))
    assert [k for k, _, _ in rep.unused] == [k for k, _, _ in aux]
    assert all(torch.equal(state[k], plain[k]) for k in plain)
