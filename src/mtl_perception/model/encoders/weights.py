"""Load ImageNet weights a user supplies as a local file into an encoder.

Accepted files: a PyTorch state dict (``.pth``/``.pt``/``.bin``, read with ``weights_only=True``,
optionally wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` and/or prefixed ``module.``), or a
``.safetensors`` file when the ``safetensors`` package is installed. Key layouts understood:

- ResNet: the torchvision layout (``conv1.``, ``bn1.``, ``layer1..4.``), which timm's ResNets share;
- MobileNetV3-Large and -Small: torchvision ``mobilenet_v3_large``/``_small`` (``features.N.``) and timm
  ``mobilenetv3_large_100``/``_small_100`` (``conv_stem``, ``bn1``, ``blocks.i.j.``);
- this package's own encoder layout (``stem.``, ``stages.``).

Classifier weights (``fc.``, ``classifier.``, ``conv_head.``, ``head.``) are dropped. A file that does
not fit raises ValueError naming the first missing and unexpected keys.

Before a file is read, its SHA-256 is computed (``verify_weights_file``): a file named like one of torchvision's
ImageNet files in ``KNOWN_WEIGHTS`` must have that file's digest (a truncated or swapped download is refused
with the expected digest and the URL); any other name is accepted and its digest logged.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch

from mtl_perception.fileio import file_sha256
from mtl_perception.model.encoders.base import Encoder
from mtl_perception.model.encoders.mobilenet import InvertedResidual, MobileNetV3Encoder
from mtl_perception.model.encoders.resnet import ResNetEncoder

CLASSIFIER_PREFIXES = ("fc.", "classifier.", "conv_head.", "head.")
SHOWN_KEYS = 5  # how many offending keys an error message lists
LOG = logging.getLogger(__name__)
TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class KnownWeights:
    """One of torchvision's ImageNet weight files that an encoder of this package loads."""

    file_name: str  # torchvision's name; the hex after the dash is the first 8 digits of the SHA-256
    encoder: str  # model.encoder that loads it
    release: str  # torchvision's weights enum member
    sha256: str  # expected digest: the full 64 hex digits, or a prefix where no full digest is known
    size: int  # bytes

    @property
    def url(self) -> str:
        return TORCHVISION_MODELS_URL + self.file_name


# torchvision's ImageNet-1K files for the encoders of this package (docs/nyuv2.md says where the digests
# come from). Legacy names such as resnet18-5c106cde.pth do not embed a SHA-256 prefix and are not listed.
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights("resnet18-f37072fd.pth", "resnet18", "ResNet18_Weights.IMAGENET1K_V1",
                 "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46_830_571),
    KnownWeights("resnet34-b627a593.pth", "resnet34", "ResNet34_Weights.IMAGENET1K_V1",
                 "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f", 87_319_819),
    KnownWeights("resnet50-0676ba61.pth", "resnet50", "ResNet50_Weights.IMAGENET1K_V1",
                 "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", 102_530_333),
    KnownWeights("resnet50-11ad3fa6.pth", "resnet50", "ResNet50_Weights.IMAGENET1K_V2",
                 "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca", 102_540_417),
    KnownWeights("mobilenet_v3_large-8738ca79.pth", "mobilenetv3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                 "8738ca797c879b547d18bbd15da5736ff2557b2036a9af72225393ca61759a04", 22_139_423),
    KnownWeights("mobilenet_v3_large-5c1a4163.pth", "mobilenetv3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
                 "5c1a416349c4cf298f2a6a5e2600ed0ee55e604713578f5e74e6bc8bcaef7997", 22_132_113),
    KnownWeights("mobilenet_v3_small-047dcff4.pth", "mobilenetv3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
                 "047dcff4addef86ea5bc2eff13c9614dc11f47ab1160d0a71a25e7db994f4e1f", 10_306_551),
)


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (set model.pretrained to an existing file or leave it empty)")
    return path


def verify_weights_file(path: str | Path, known: tuple[KnownWeights, ...] = KNOWN_WEIGHTS) -> tuple[str, KnownWeights | None]:
    """(SHA-256 of ``path``, the known file its name names or None); ValueError when the digest does not match."""
    path = _existing_file(path)
    digest = file_sha256(path)
    entry = next((k for k in known if k.file_name == path.name), None)
    if entry is None:
        LOG.warning("pretrained weights %s: not a known torchvision file name, loaded unchecked (SHA-256 %s)", path, digest)
        return digest, None
    if not digest.startswith(entry.sha256):
        raise ValueError(f"pretrained weights {path}: expected SHA-256 {entry.sha256} ({entry.size} bytes) of torchvision's "
                         f"{entry.file_name}, got {digest} ({path.stat().st_size} bytes); the file is damaged or another one: "
                         f"download it again from {entry.url}")
    LOG.info("pretrained weights %s: torchvision %s, SHA-256 %s verified", path, entry.release, digest)
    return digest, entry


# A layout maps one of our state-dict keys to the key the same tensor has in another layout.
KeyMapper = Callable[[Encoder, str], str]


@dataclass(frozen=True)
class LoadReport:
    """What ``load_pretrained`` did."""

    path: str
    layout: str  # the key layout the file was recognised as
    loaded: int  # tensors copied into the encoder
    skipped: int  # classifier tensors in the file that were ignored
    kept_default: int  # buffers absent from the file that kept their value (num_batches_tracked)
    sha256: str  # digest of the file
    release: str | None  # the torchvision release the file was verified as, None for other files


def _identity(encoder: Encoder, key: str) -> str:
    return key


def resnet_key(encoder: Encoder, key: str) -> str:
    """Our ResNet key -> torchvision/timm key (``stem.conv1`` -> ``conv1``, ``stages.0`` -> ``layer1``)."""
    if key.startswith("stem."):
        return key[len("stem.") :]
    _, stage, rest = key.split(".", 2)
    return f"layer{int(stage) + 1}.{rest}"


def _split_feature_layer(encoder: MobileNetV3Encoder, key: str) -> tuple[int, torch.nn.Module, str]:
    """(feature layer index, its module, key remainder) of one of our MobileNetV3 keys."""
    for index, (prefix, module) in enumerate(encoder.feature_layers()):
        if key.startswith(prefix + "."):
            return index, module, key[len(prefix) + 1 :]
    raise KeyError(f"key '{key}' is not inside a MobileNetV3 feature layer")


def torchvision_mobilenet_key(encoder: Encoder, key: str) -> str:
    """Our MobileNetV3 key -> torchvision ``mobilenet_v3_large`` / ``_small`` key (``features.N.`` + same remainder)."""
    assert isinstance(encoder, MobileNetV3Encoder)
    index, _, rest = _split_feature_layer(encoder, key)
    return f"features.{index}.{rest}"


# Names of (conv, bn) of each block part in timm: with an expansion conv (InvertedResidual) and without
# (DepthwiseSeparableConv).
TIMM_EXPANDED_NAMES = {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
TIMM_DEPTHWISE_NAMES = {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")}
TIMM_SE_NAMES = {"fc1": "conv_reduce", "fc2": "conv_expand"}


def _timm_block_prefix(encoder: MobileNetV3Encoder, index: int) -> str:
    """timm ``blocks.i.j`` prefix of feature layer ``index`` (1..), grouped as the encoder's spec says."""
    remaining = index - 1
    for group, size in enumerate(encoder.spec.timm_groups):
        if remaining < size:
            return f"blocks.{group}.{remaining}"
        remaining -= size
    raise KeyError(f"feature layer {index} is past the last timm block")


def timm_mobilenet_key(encoder: Encoder, key: str) -> str:
    """Our MobileNetV3 key -> timm ``mobilenetv3_large_100`` / ``mobilenetv3_small_100`` key."""
    assert isinstance(encoder, MobileNetV3Encoder)
    index, module, rest = _split_feature_layer(encoder, key)
    if not isinstance(module, InvertedResidual):  # a conv-bn-act: the stem conv or the final 1x1 conv
        part, tail = rest.split(".", 1)
        if index == 0:
            return f"{'conv_stem' if part == '0' else 'bn1'}.{tail}"
        return f"{_timm_block_prefix(encoder, index)}.{'conv' if part == '0' else 'bn1'}.{tail}"
    _, part, layer, tail = rest.split(".", 3)  # "block", part index, layer ("0"/"1" or "fc1"/"fc2"), rest
    role = module.roles[int(part)]
    prefix = _timm_block_prefix(encoder, index)
    if role == "se":
        return f"{prefix}.se.{TIMM_SE_NAMES[layer]}.{tail}"
    names = TIMM_EXPANDED_NAMES if "expand" in module.roles else TIMM_DEPTHWISE_NAMES
    conv, bn = names[role]
    return f"{prefix}.{conv if layer == '0' else bn}.{tail}"


def layouts_for(encoder: Encoder) -> dict[str, KeyMapper]:
    """The checkpoint layouts an encoder can load, by name."""
    if isinstance(encoder, ResNetEncoder):
        return {"torchvision/timm": resnet_key, "mtl_perception": _identity}
    if isinstance(encoder, MobileNetV3Encoder):
        return {"torchvision": torchvision_mobilenet_key, "timm": timm_mobilenet_key, "mtl_perception": _identity}
    return {"mtl_perception": _identity}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped from ``state_dict``/``model`` and the ``module.`` prefix."""
    path = _existing_file(path)
    if path.suffix == ".safetensors":
        if importlib.util.find_spec("safetensors") is None:
            raise ValueError(f"{path} is a .safetensors file but the 'safetensors' package is not installed; pip install safetensors, or convert it to a .pth state dict")
        from safetensors.torch import load_file

        raw: object = load_file(str(path), device="cpu")
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(raw, Mapping) and isinstance(raw.get(wrapper), Mapping):
            raw = raw[wrapper]
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(raw).__name__})")
    tensors = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def _is_optional(key: str) -> bool:
    """Buffers a checkpoint may omit without harm."""
    return key.endswith("num_batches_tracked")


def _shown(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def load_pretrained(encoder: Encoder, path: str | Path) -> LoadReport:
    """Copy the weights in ``path`` into ``encoder``; raise ValueError if the file does not fit it.

    The file's digest is checked first (``verify_weights_file``), so a damaged known file is refused unread.
    """
    digest, known = verify_weights_file(path)
    file_tensors = read_state_dict(path)
    kept = {k: v for k, v in file_tensors.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    skipped = len(file_tensors) - len(kept)
    own = encoder.state_dict()
    layouts = layouts_for(encoder)
    # Recognise the layout as the one under which most of the file's keys name our tensors.
    mappings = {name: {mapper(encoder, k): k for k in own} for name, mapper in layouts.items()}
    layout = max(mappings, key=lambda name: sum(k in mappings[name] for k in kept))
    external_to_own = mappings[layout]

    missing = [ext for ext, k in external_to_own.items() if ext not in kept and not _is_optional(k)]
    unexpected = [k for k in kept if k not in external_to_own]
    wrong_shape = [
        f"{k} {tuple(v.shape)} vs {tuple(own[external_to_own[k]].shape)}"
        for k, v in kept.items()
        if k in external_to_own and v.shape != own[external_to_own[k]].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys: {_shown(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {_shown(unexpected)}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatches: {_shown(wrong_shape)}")
        raise ValueError(
            f"{path} does not fit encoder {type(encoder).__name__} (closest layout: {layout}; known: {sorted(layouts)}): "
            + "; ".join(problems)
            + ". Check that the file holds ImageNet weights of the same architecture as model.encoder."
        )
    new_state = {external_to_own[k]: v for k, v in kept.items()}
    encoder.load_state_dict(new_state, strict=False)
    return LoadReport(str(path), layout, loaded=len(new_state), skipped=skipped, kept_default=len(own) - len(new_state),
                      sha256=digest, release=known.release if known else None)


__all__ = ["KNOWN_WEIGHTS", "KeyMapper", "KnownWeights", "LoadReport", "load_pretrained", "verify_weights_file", "read_state_dict", "layouts_for", "resnet_key", "torchvision_mobilenet_key", "timm_mobilenet_key"]
