"""Zero-cost proxies: scores of an untrained network that are meant to rank architectures like training does.

Each proxy is ``proxy(model, batch, *, seed=0) -> float``: ``model`` a built network (``nasseg.build``),
``batch`` = (float images ``[N, 3, H, W]``, normalised as for training; int64 labels ``[N, H, W]``) at the
proxy resolution, e.g. from :func:`proxy_batch`.  Proxies that need no labels or no real images use only the
batch's shape.  Higher is meant to be better for every one of them; how well each ranks is an empirical
question that :mod:`nasseg.fidelity_stats` answers.

========== ====================================================================================================
name       what it computes (paper)
========== ====================================================================================================
synflow    log of sum |theta * dR/dtheta| over conv / linear weights, R = sum of the outputs of the network
           with every parameter and buffer replaced by its absolute value, on an all-ones input of batch 1,
           BN in eval mode, in float64 (Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without
           any data by iteratively conserving synaptic flow", NeurIPS 2020; as a NAS proxy: Abdelfattah,
           Mehrotra, Dudziak & Lane, "Zero-Cost Proxies for Lightweight NAS", ICLR 2021)
naswot     log |det K|, K[i, j] = number of activation units on which images i and j have the same binary
           code (N_A minus the Hamming distance), summed over every ReLU-family activation call (Mellor,
           Turner, Storkey & Crowley, "Neural Architecture Search without Training", ICML 2021)
grad_norm  L2 norm of the gradient of the cross-entropy loss on one labelled batch (Abdelfattah et al. 2021)
snip       sum |theta * dL/dtheta| over conv / linear weights, L the same cross-entropy loss (Lee, Ajanthan &
           Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019)
zen_score  log E|f(x) - f(x + 0.01 eps)| + sum over BN layers of log sqrt(mean running_var), Gaussian weights
           and inputs (Lin, Wang, Sun, Chen, Sun, Qian, Li & Jin, "Zen-NAS: A Zero-Shot NAS for
           High-Performance Image Recognition", ICCV 2021)
params     parameters used at inference (:func:`nasseg.cost.count_params`), the baseline every proxy must beat
macs       multiply-accumulates of one image at the batch's resolution (:func:`nasseg.cost.count_macs`)
========== ====================================================================================================

Rules shared by every proxy
---------------------------
* The caller's model is never changed: each proxy works on a deep copy (synflow takes absolute values of
  the weights, zen_score re-initialises them, gradients and BN statistics change on the copy only).
* Deterministic per seed: the proxy runs under ``torch.random.fork_rng`` seeded with ``seed`` (the caller's
  random state is restored afterwards); on CPU a repeat gives the same float (the tests check equality).
  Only zen_score draws random numbers itself; :func:`score` also builds a genome and renders its batch
  from the seed.
* Mode: synflow runs in eval mode (BN uses its running statistics, which keeps SynFlow's data-free pass
  free of batch statistics).  naswot, grad_norm, snip and zen_score run in train mode -- BN normalises
  with the batch's statistics, as at the first step of training -- except that Dropout modules are put in
  eval mode: a random mask would score one mask, not the architecture (a divergence from the papers, whose
  networks have no dropout).  Train mode needs two images or more per batch (BN of a 1x1 map otherwise).
* Outputs: ``build()`` networks return logits ``[N, C, H, W]`` in eval mode and a dict whose ``"out"`` is
  those logits in train mode; auxiliary, detail and boundary outputs are left out of every proxy (they
  only train).  A plain tensor, or a tuple / list whose first element is the logits, is taken as well.
  Image classifiers (the ``fasternet_*`` presets) return ``[N, C]``: their loss is cross-entropy against
  the most frequent label of each image.
* Labels are folded into the network's classes (``label % C``) so that a network with fewer classes
  than the synthetic dataset's 11 still gets a loss; ``ignore_index`` 255 is left out.
* A proxy returns a finite float or raises :class:`nasseg.errors.NassegError` saying why (e.g. a float64
  overflow in synflow, a singular kernel in naswot).

Proxy-specific choices and divergences
--------------------------------------
* synflow is returned as a natural log, always (not only when it would overflow): the raw score spans
  5e17 (PP-LiteSeg-T) to 2e84 (LEDNet) at 64 x 128 and overflows float32 beyond 3e38, and a log is
  rank-equivalent, so rank agreement is unchanged.  The sum is formed in float64 (range 1.8e308); a
  network that overflows even that raises NassegError rather than returning an infinite score.
  Only conv / linear weights enter the sum (the prunable parameters of Tanaka et al.; Abdelfattah et al.
  alike), although every parameter and buffer is made absolute.
* naswot: the binary code of a unit is ``pre-activation > 0``, taken at every call of a ReLU-family
  activation function -- ReLU, ReLU6 / hardtanh, LeakyReLU, PReLU, RReLU, ELU, SELU, CELU, GELU, SiLU,
  Mish, Hardswish -- whether called through a module (``nn.ReLU``) or functionally (``F.relu``, which ERFNet
  and LEDNet blocks use), intercepted with a ``TorchFunctionMode``.  For all of them the unit is "on" for a
  positive input (the smooth ones pass it almost unchanged) and near zero otherwise.  Calls on a tensor
  whose first dimension is not the batch, or on a parameter, are skipped.  Codes of one call are the whole
  activation map flattened per image, so a segmentation network's spatial units count.  Mellor et al.
  hook ``nn.ReLU`` modules only.  Sigmoid gates are not ReLU-family and are left out.
* grad_norm: the L2 norm over every parameter that receives a gradient from the main output's loss
  (Abdelfattah et al. sum the per-layer norms of conv / linear weight gradients instead).  The loss is the
  plain cross-entropy, not the recipe's OHEM; logits are resized bilinearly to the labels when smaller.
* snip: the unnormalised sum, as Abdelfattah et al. (Lee et al. normalise the sensitivities to sum to 1
  in order to prune, which would make every network score 1).
* zen_score follows the official ZenNAS code: conv and linear weights N(0, 1), biases 0, BN / GroupNorm
  weight 1 and bias 0 (PReLU slopes are kept), input and perturbation N(0, 1) of the batch's shape,
  mixup gamma 0.01, one repeat (the paper averages 32 draws of weights and inputs; repeat with other seeds
  and average for that).  The |difference| is summed over C, H, W and averaged over the batch.  The
  features: Zen-NAS scores the backbone's last feature map before global pooling.  For a ``build()``
  network we take the features its final classifier reads: (1) the input of the main head when the
  network has one (STDC-Seg, PP-LiteSeg: the decoder's output, before ``SegHead``); (2) for an image
  classifier the deepest stage's output that the classifier pools (Zen-NAS's own definition); (3)
  otherwise -- decoders that emit logits themselves (RegSeg, LEDNet, ERFNet, ESPNet, DWRSeg) -- the logits
  at input size, since no single pre-classifier feature exists there.  The three are different quantities
  (channels and resolution differ), so compare zen scores within one kind of network; any other module is
  scored on its main output.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.overrides import TorchFunctionMode

from nasseg.build import Network, build
from nasseg.cost import count_macs, count_params
from nasseg.data import synthetic_batch
from nasseg.errors import ConfigError, NassegError
from nasseg.genome import Genome

__all__ = [
    "Batch",
    "PROXIES",
    "proxy_batch",
    "synflow",
    "naswot",
    "grad_norm",
    "snip",
    "zen_score",
    "params",
    "macs",
    "score",
    "score_all",
]

#: (float images [N, 3, H, W], int64 labels [N, H, W])
Batch = tuple[torch.Tensor, torch.Tensor]

IGNORE_INDEX = 255
ZEN_MIXUP_GAMMA = 1e-2


# ------------------------------------------------------------------------------------------------ helpers
def _check_batch(batch: object, proxy: str, *, min_images: int = 1) -> Batch:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(torch.is_tensor(t) for t in batch)):
        raise ConfigError(f"{proxy}: batch = {type(batch).__name__} is not allowed; valid: (images [N, 3, H, W], "
                          "labels [N, H, W]) tensors, e.g. from nasseg.zero_cost.proxy_batch")
    images, labels = batch
    if images.dim() != 4 or not images.is_floating_point():
        raise ConfigError(f"{proxy}: images of shape {tuple(images.shape)} and dtype {images.dtype} are not "
                          "allowed; valid: a float tensor [N, 3, H, W]")
    if labels.dim() != 3 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise ConfigError(f"{proxy}: labels of shape {tuple(labels.shape)} do not go with images "
                          f"{tuple(images.shape)}; valid: an integer tensor [N, H, W] with the images' N")
    if images.shape[0] < min_images:
        raise ConfigError(f"{proxy}: a batch of {images.shape[0]} image is not allowed; valid: at least "
                          f"{min_images} (BatchNorm in train mode needs more than one value per channel)")
    return images, labels


def _check_module(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model = {type(model).__name__} is not allowed; valid: a torch.nn.Module "
                          "(e.g. from nasseg.build.build)")
    return model


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the block; the caller's random state is restored afterwards."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed = {seed!r} is not allowed; valid: an integer >= 0")
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _working_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy on ``device`` with every parameter trainable and no gradient: the proxies' scratch model."""
    work = copy.deepcopy(_check_module(model)).to(device)
    work.requires_grad_(True)
    work.zero_grad(set_to_none=True)
    return work


def _train_without_dropout(model: nn.Module) -> nn.Module:
    model.train()
    for m in model.modules():
        if isinstance(m, _DropoutNd):
            m.eval()
    return model


def _main_output(out: object) -> torch.Tensor:
    """The logits of a model's output: a tensor, ``out["out"]`` of a train-mode dict, or ``out[0]``."""
    if isinstance(out, Mapping):
        out = out["out"]
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not torch.is_tensor(out):
        raise NassegError(f"the model returned {type(out).__name__}; zero-cost proxies need a logits tensor, "
                          "a dict with 'out' or a tuple whose first element is the logits")
    return out


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Weights of every convolution (transposed too) and linear layer, each once."""
    seen: set[int] = set()
    for m in model.modules():
        if isinstance(m, (_ConvNd, nn.Linear)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            yield m.weight


def _finite(proxy: str, value: float, why: str) -> float:
    if not math.isfinite(value):
        raise NassegError(f"{proxy} = {value}: {why}")
    return float(value)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits [N, C, h, w] against labels [N, H, W], or of class scores [N, C] against
    each image's most frequent label; labels folded into C classes, IGNORE_INDEX left out."""
    n_classes = logits.shape[1]
    valid = labels != IGNORE_INDEX
    target = torch.where(valid, labels % n_classes, torch.full_like(labels, IGNORE_INDEX))
    if logits.dim() == 2:
        per_image = []
        for t, v in zip(target, valid):
            seen = t[v]
            per_image.append(torch.bincount(seen, minlength=n_classes).argmax() if seen.numel() else
                             torch.tensor(IGNORE_INDEX, device=t.device))
        return F.cross_entropy(logits.float(), torch.stack(per_image), ignore_index=IGNORE_INDEX)
    if logits.dim() != 4:
        raise NassegError(f"the model returns logits of shape {tuple(logits.shape)}; valid: [N, C, H, W] "
                          "(segmentation) or [N, C] (classification)")
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def _loss_gradients(model: nn.Module, batch: Batch, seed: int, proxy: str) -> nn.Module:
    """A train-mode copy of ``model`` after one backward pass of the cross-entropy loss on ``batch``."""
    images, labels = _check_batch(batch, proxy, min_images=2)
    with _seeded(seed, images.device):
        work = _train_without_dropout(_working_copy(model, images.device))
        loss = _cross_entropy(_main_output(work(images)), labels)
        _finite(proxy, float(loss.detach()), "the loss of the untrained network is not finite")
        loss.backward()
    return work


# ------------------------------------------------------------------------------------------------ proxies
def synflow(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """Natural log of the SynFlow score (Tanaka et al. 2020); see the module docstring.  Uses only the
    batch's image shape (C, H, W) and device."""
    images, _ = _check_batch(batch, "synflow")
    with _seeded(seed, images.device):
        work = _working_copy(model, images.device).double().eval()
        with torch.no_grad():
            for t in work.state_dict().values():  # parameters and buffers (BN statistics), as Tanaka et al.
                if t.is_floating_point():
                    t.abs_()
        ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
        r = _main_output(work(ones)).sum()
        _finite("synflow", float(r.detach()), "the all-ones forward pass overflows float64")
        r.backward()
        with torch.no_grad():
            total = sum(float((w * w.grad).abs().sum()) for w in _weights(work) if w.grad is not None)
    if total <= 0:
        raise NassegError("synflow: the score is 0 (no convolution or linear weight reaches the output)")
    return math.log(_finite("synflow", total, "the score overflows float64"))


# The ReLU family whose pre-activation sign is a unit's NASWOT code, module or functional.
_ACTIVATIONS = frozenset({
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.relu6, F.hardtanh, F.hardtanh_,
    F.leaky_relu, F.leaky_relu_, F.prelu, torch.prelu, F.rrelu, F.rrelu_,
    F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
})


class _ActivationCodes(TorchFunctionMode):
    """Accumulates Mellor's kernel K = N_A - Hamming over every ReLU-family call of a forward pass."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.kernel = torch.zeros(batch_size, batch_size, dtype=torch.float64)
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ACTIVATIONS and args and torch.is_tensor(args[0]):
            x = args[0]  # read before the call: in-place activations overwrite it
            if x.dim() >= 1 and x.shape[0] == self.batch_size and not isinstance(x, nn.Parameter):
                signs = (x.detach().reshape(self.batch_size, -1) > 0).to(torch.float64) * 2 - 1
                # with +-1 codes, s_i . s_j = agreements - disagreements = N_A - 2 Hamming
                self.kernel += ((signs @ signs.T + signs.shape[1]) / 2).cpu()
                self.calls += 1
        return func(*args, **kwargs)


def naswot(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """log |det K| of the binary activation codes of the batch's images (Mellor et al. 2021); see the
    module docstring for which activations count.  Uses the images, not the labels."""
    images, _ = _check_batch(batch, "naswot", min_images=2)
    with _seeded(seed, images.device):
        work = _train_without_dropout(_working_copy(model, images.device))
        codes = _ActivationCodes(images.shape[0])
        with torch.no_grad(), codes:
            work(images)
    if codes.calls == 0:
        raise NassegError("naswot: the network calls no ReLU-family activation, so there are no codes to compare")
    sign, logdet = torch.linalg.slogdet(codes.kernel)
    return _finite("naswot", float(logdet),
                   "the kernel is singular: two images of the batch have identical activation codes")


def grad_norm(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """L2 norm of the cross-entropy gradient over every parameter on the main output's path."""
    work = _loss_gradients(model, batch, seed, "grad_norm")
    total = sum(float(p.grad.double().pow(2).sum()) for p in work.parameters() if p.grad is not None)
    return _finite("grad_norm", math.sqrt(total), "the gradient is not finite")


def snip(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """Sum of |theta * dL/dtheta| over conv / linear weights (Lee et al. 2019, unnormalised)."""
    work = _loss_gradients(model, batch, seed, "snip")
    with torch.no_grad():
        total = sum(float((w.double() * w.grad.double()).abs().sum()) for w in _weights(work) if w.grad is not None)
    return _finite("snip", total, "the gradient is not finite")


def _gaussian_init(model: nn.Module) -> None:
    """ZenNAS's ``network_weight_gaussian_init``: conv / linear N(0, 1), biases 0, norms weight 1 bias 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (_ConvNd, nn.Linear)):
                nn.init.normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _zen_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features Zen's difference is taken on (module docstring): what the final classifier reads."""
    captured: list[torch.Tensor] = []
    hook = None
    if isinstance(model, Network) and not isinstance(model.head, nn.Identity):
        hook = model.head.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    elif isinstance(model, Network) and model.is_classifier:
        hook = model.decoder.register_forward_pre_hook(lambda m, args: captured.append(args[0][-1]))
    try:
        out = _main_output(model(x))
    finally:
        if hook is not None:
            hook.remove()
    return captured[0] if captured else out


def zen_score(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """Zen-score (Lin et al. 2021) with Gaussian weights and inputs of the batch's shape; see the module
    docstring for the features it is taken on.  Uses only the batch's image shape and device."""
    images, _ = _check_batch(batch, "zen_score", min_images=2)
    with _seeded(seed, images.device):
        work = _train_without_dropout(_working_copy(model, images.device))
        _gaussian_init(work)
        x = torch.randn(images.shape, device=images.device)
        mixed = x + ZEN_MIXUP_GAMMA * torch.randn(images.shape, device=images.device)
        with torch.no_grad():
            difference = (_zen_features(work, x) - _zen_features(work, mixed)).double()
            expressivity = float(difference.abs().flatten(1).sum(1).mean())
            log_bn = sum(math.log(math.sqrt(float(m.running_var.double().mean()))) for m in work.modules()
                         if isinstance(m, _BatchNorm) and m.running_var is not None)
    if not expressivity > 0:
        raise NassegError(f"zen_score: the features do not change under the perturbation ({expressivity})")
    return _finite("zen_score", math.log(expressivity) + log_bn, "the Gaussian-weight forward pass overflows")


def params(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """:func:`nasseg.cost.count_params` (inference parameters); the batch and seed are not used."""
    return float(count_params(_check_module(model)))


def macs(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """:func:`nasseg.cost.count_macs` of ONE image at the batch's resolution, on the batch's device."""
    images, _ = _check_batch(batch, "macs")
    return float(count_macs(_check_module(model), (1, *images.shape[1:]), images.device).macs)


#: name -> proxy; every one is ``proxy(model, batch, *, seed) -> float``.
PROXIES: dict[str, Callable[..., float]] = {
    "synflow": synflow,
    "naswot": naswot,
    "grad_norm": grad_norm,
    "snip": snip,
    "zen_score": zen_score,
    "params": params,
    "macs": macs,
}


# ------------------------------------------------------------------------------------------ entry points
def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device = {device!r} is not allowed; valid: 'cpu', 'cuda' or 'cuda:<index>'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device = {device!r} is not allowed; valid: 'cpu', 'cuda' or 'cuda:<index>'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} is not available: torch.cuda.is_available() is False")
    return dev


def _check_name(name: object) -> str:
    if name not in PROXIES:
        close = difflib.get_close_matches(str(name), list(PROXIES), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown zero-cost proxy {name!r}; {hint}valid: {', '.join(PROXIES)}")
    return name  # type: ignore[return-value]


def proxy_batch(resolution: Sequence[int] = (64, 128), batch_size: int = 2, *, seed: int = 0,
                device: str | torch.device = "cpu") -> Batch:
    """Synthetic training images 0 .. batch_size - 1 of ``seed`` at ``resolution`` (H, W), normalised,
    with their labels, rendered on ``device`` (:func:`nasseg.data.synthetic_batch`)."""
    res = tuple(resolution) if isinstance(resolution, (tuple, list)) else resolution
    if not (isinstance(res, tuple) and len(res) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 16 for s in res)):
        raise ConfigError(f"resolution = {resolution!r} is not allowed; valid: two integers >= 16 (H, W)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ConfigError(f"batch_size = {batch_size!r} is not allowed; valid: an integer >= 2 "
                          "(train-mode BatchNorm and NASWOT's kernel need two images or more)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed = {seed!r} is not allowed; valid: an integer >= 0")
    return synthetic_batch(range(batch_size), "train", res, seed=seed, device=_device(device))


def _model(module_or_genome: nn.Module | Genome, num_classes: int, seed: int) -> nn.Module:
    if isinstance(module_or_genome, Genome):
        with _seeded(seed, torch.device("cpu")):  # the initial weights are part of what is scored
            return build(module_or_genome, num_classes)
    if isinstance(module_or_genome, nn.Module):
        have = getattr(module_or_genome, "num_classes", None)
        if isinstance(have, int) and have != num_classes:
            raise ConfigError(f"num_classes = {num_classes!r} does not match the module's num_classes = {have}")
        return module_or_genome
    raise ConfigError(f"module_or_genome = {type(module_or_genome).__name__} is not allowed; valid: a Genome "
                      "or a torch.nn.Module")


def score_all(
    module_or_genome: nn.Module | Genome,
    *,
    names: Sequence[str] | None = None,
    num_classes: int,
    resolution: Sequence[int] = (64, 128),
    batch_size: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Every proxy in ``names`` (default: all of :data:`PROXIES`, in that order) on one model and one batch.

    A genome is built with ``num_classes`` under ``torch.manual_seed(seed)`` (so its initial weights are a
    function of the seed); a module is scored as it is (a copy of it; ``num_classes`` must match its
    ``num_classes`` attribute when it has one).  The batch is :func:`proxy_batch` ``(resolution, batch_size,
    seed=seed, device=device)``.  Unknown names raise ConfigError listing the valid ones.
    """
    chosen = [_check_name(n) for n in (list(PROXIES) if names is None else names)]
    batch = proxy_batch(resolution, batch_size, seed=seed, device=device)
    model = _model(module_or_genome, num_classes, seed)
    return {n: PROXIES[n](model, batch, seed=seed) for n in chosen}


def score(
    name: str,
    module_or_genome: nn.Module | Genome,
    *,
    num_classes: int,
    resolution: Sequence[int] = (64, 128),
    batch_size: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """One proxy by name (see :func:`score_all` for the arguments)."""
    return score_all(module_or_genome, names=[name], num_classes=num_classes, resolution=resolution,
                     batch_size=batch_size, seed=seed, device=device)[name]
