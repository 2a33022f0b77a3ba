"""Loading and saving of every network checkpoint, in one place.

Two file layouts are read:

1. **Published raw state_dicts** (``pose_model_*.pth``, ``pose_refine_model_*.pth`` of
   j96w/DenseFusion, and ``vanilla_segmentation`` SegNet ``model_*.pth``): a plain mapping of
   tensors. Wrapper prefixes ``module.`` / ``_orig_mod.`` are tolerated and the published
   ``cnn.model.module.`` prefix is renamed to ``cnn.`` by :func:`remap_state_dict`, the only
   key-renaming function. Metadata (normalisation, object names, number of points) is inferred.
2. **This project's format**: a dict ``{"format": "densefusion_ros", "version": 1, "kind":
   "estimator" | "refiner" | "segmenter", "arch", "backbone", "num_objects", "num_classes",
   "num_points", "object_names", "normalization": {"scale", "mean", "std"}, "training": {...},
   "metrics": {...}, "state_dict": {...}}`` written by :func:`save_checkpoint`.

Every load uses ``torch.load(path, map_location="cpu", weights_only=True)`` and strict key and
shape matching; any mismatch raises :class:`CheckpointError`, whose message names the file, the
missing / unexpected / mis-shaped keys and what the file looks like. Loaded models are in eval
mode and carry ``model.metadata``, a :class:`~densefusion_ros.models.metadata.CheckpointMeta`
(read it with :func:`~densefusion_ros.models.metadata.metadata_of`), so that callers can
normalise images (:func:`densefusion_ros.models.transforms.normalize_image`) and name objects.
The files keep the metadata as plain keys beside ``state_dict``: files written before the typed
form load unchanged, and files written now load with older code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones import COLOR_BACKBONES
from .estimator import DenseFusionEstimator
from .metadata import CheckpointMeta, metadata_of
from .refiner import DenseFusionRefiner
from .segmentation import SEGMENTER_ARCHS, CompactSegNet, SegNet, build_segmenter
from .transforms import PUBLISHED_NORMALIZATION, check_normalization

__all__ = [
    "CheckpointError",
    "FORMAT",
    "VERSION",
    "load_estimator",
    "load_refiner",
    "load_segmenter",
    "read_metadata",
    "remap_state_dict",
    "save_checkpoint",
    "to_published_state_dict",
    "unwrap_model",
]

FORMAT = "densefusion_ros"
VERSION = 1
KINDS = ("estimator", "refiner", "segmenter")

PathLike = str | os.PathLike

# Wrapper prefixes stripped from the front of every key (DataParallel / DDP, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Legacy renames (published -> this package); the inverse is used for export.
_LEGACY_RENAMES = (("cnn.model.module.", "cnn."), ("cnn.model.", "cnn."))
_PUBLISHED_CNN_PREFIX = "cnn.model.module."

YCB_OBJECT_NAMES = (
    "002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can", "006_mustard_bottle",
    "007_tuna_fish_can", "008_pudding_box", "009_gelatin_box", "010_potted_meat_can", "011_banana",
    "019_pitcher_base", "021_bleach_cleanser", "024_bowl", "025_mug", "035_power_drill", "036_wood_block",
    "037_scissors", "040_large_marker", "051_large_clamp", "052_extra_large_clamp", "061_foam_brick",
)  # fmt: skip
LINEMOD_OBJECT_NAMES = (
    "ape", "benchvise", "cam", "can", "cat", "driller", "duck", "eggbox", "glue", "holepuncher", "iron", "lamp", "phone",
)  # fmt: skip
# Published defaults by object count: (dataset, object names, num_points).
_PUBLISHED_DEFAULTS = {21: ("ycb", YCB_OBJECT_NAMES, 1000), 13: ("linemod", LINEMOD_OBJECT_NAMES, 500)}


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or does not fit the requested model."""


# ----------------------------------------------------------------------------------------------
# key handling


def remap_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Map foreign key names onto this package's module names (the one remapping function).

    Strips leading ``module.`` / ``_orig_mod.`` (any order, repeated) and renames the published
    ``cnn.model.module.`` (and ``cnn.model.``) prefix to ``cnn.``. Other keys are unchanged.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        k = key
        stripped = True
        while stripped:
            stripped = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, stripped = k[len(p) :], True
        for old, new in _LEGACY_RENAMES:
            if k.startswith(old):
                k = new + k[len(old) :]
                break
        if k in out:
            raise CheckpointError(f"two keys map to {k!r} after removing wrapper prefixes")
        out[k] = value
    return out


def to_published_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """State dict with the published key names (``cnn.`` -> ``cnn.model.module.`` for the estimator).

    Loading it with the official ``PoseNet`` / ``PoseRefineNet`` / ``SegNet`` classes works for
    the published-layout models (``psp_resnet18`` backbone, refiner, ``segnet``).
    """
    model = unwrap_model(model)
    sd = model.state_dict()
    if not isinstance(model, DenseFusionEstimator):
        return OrderedDict((k, v) for k, v in sd.items())
    return OrderedDict(((_PUBLISHED_CNN_PREFIX + k[4:]) if k.startswith("cnn.") else k, v) for k, v in sd.items())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


# ----------------------------------------------------------------------------------------------
# recognising a state_dict


@dataclass(frozen=True)
class _Identity:
    kind: str | None  # "estimator" | "refiner" | "segmenter" | None
    variant: str | None  # estimator: color backbone name; segmenter: "segnet" | "compact"; refiner: None
    count: int | None  # estimator/refiner: objects; segmenter: classes
    text: str


def _meta_model(kind: str, variant: str | None, count: int) -> nn.Module:
    """Build a model on the meta device (no memory, no init cost); weights come with ``assign``."""
    with torch.device("meta"):
        if kind == "estimator":
            return DenseFusionEstimator(count, backbone=variant or "psp_resnet18")
        if kind == "refiner":
            return DenseFusionRefiner(count)
        return build_segmenter(num_classes=count, arch=variant or "segnet")


def _same_keys(keys: set[str], expected: Mapping[str, Any], prefix: str = "") -> bool:
    """Key sets equal, ignoring BatchNorm ``num_batches_tracked`` counters (absent in old files)."""

    def core(ks):
        return {k for k in ks if not k.endswith("num_batches_tracked")}

    return core(keys) == core(prefix + k for k in expected)


def _backbone_of(keys: set[str]) -> str | None:
    """Name of the registered color backbone whose keys are exactly the ``cnn.*`` keys."""
    cnn_keys = {k for k in keys if k.startswith("cnn.")}
    for name, builder in COLOR_BACKBONES.items():
        with torch.device("meta"):
            expected = builder().state_dict()
        if _same_keys(cnn_keys, expected, "cnn."):
            return name
    return None


def _identify(sd: Mapping[str, torch.Tensor], *, published: bool) -> _Identity:
    """Recognise a (remapped) state_dict by key signatures."""

    def shape(k: str) -> tuple[int, ...] | None:
        v = sd.get(k)
        return tuple(v.shape) if isinstance(v, torch.Tensor) else None

    src = "published " if published else ""
    c4 = shape("conv4_c.weight")
    if c4 is not None and shape("feat.conv5.weight") is not None:
        k = c4[0]
        backbone = _backbone_of(set(sd))
        if backbone == "psp_resnet18":
            what = "a published-layout DenseFusion estimator (PoseNet, psp_resnet18 color net)"
            if published:
                what = "a published DenseFusion estimator (PoseNet)"
        elif backbone is not None:
            what = f"a DenseFusion estimator with the {backbone!r} color backbone"
        else:
            what = "a DenseFusion estimator with an unknown color backbone"
        return _Identity("estimator", backbone, k, f"{what} with {k} objects")
    r3 = shape("conv3_r.weight")
    if r3 is not None and len(r3) == 2 and shape("feat.conv5.weight") is not None:
        k = r3[0] // 4
        return _Identity("refiner", None, k, f"a {src}DenseFusion refiner (PoseRefineNet) with {k} objects")
    d11 = shape("conv11d.weight")
    if d11 is not None and shape("conv11.weight") is not None:
        return _Identity("segmenter", "segnet", d11[0], f"a {src}SegNet (vanilla_segmentation) with {d11[0]} classes")
    cl = shape("classifier.weight")
    if cl is not None and _same_keys(set(sd), _meta_model("segmenter", "compact", cl[0]).state_dict()):
        return _Identity("segmenter", "compact", cl[0], f"a compact segmenter with {cl[0]} classes")
    if c4 is not None or r3 is not None:
        return _Identity(None, None, None, "a partial DenseFusion network (unknown layout)")
    return _Identity(None, None, None, f"an unknown layout ({len(sd)} tensors)")


# ----------------------------------------------------------------------------------------------
# reading files


def _torch_load(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): {first}. "
            "Only tensors and plain containers are accepted; re-save the model's state_dict()."
        ) from e


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


@dataclass
class _Contents:
    state_dict: OrderedDict[str, torch.Tensor]
    meta: dict[str, Any]
    identity: _Identity
    own_format: bool


def _raw_metadata(ident: _Identity, *, published: bool) -> dict[str, Any]:
    """Metadata of a bare state_dict: inferred from its keys (and published defaults)."""
    meta: dict[str, Any] = {
        "format": "published" if published else "state_dict",
        "version": None,
        "num_points": None,
        "object_names": None,
        "dataset": None,
        # released weights: 0-255 RGB with ImageNet mean/std; unknown for other bare state_dicts
        "normalization": dict(PUBLISHED_NORMALIZATION) if published else None,
        "training": {},
        "metrics": {},
        "guessed": [],
    }
    meta.update(_counts_meta(ident.kind, ident.count, ident.variant))
    if published and ident.kind in ("estimator", "refiner") and ident.count in _PUBLISHED_DEFAULTS:
        dataset, names, num_points = _PUBLISHED_DEFAULTS[ident.count]
        meta.update(dataset=dataset, object_names=list(names), num_points=num_points)
        meta["guessed"] = ["dataset", "object_names", "num_points"]
    return meta


def _counts_meta(kind: str | None, count: int | None, variant: str | None) -> dict[str, Any]:
    """``kind``, ``arch``, ``backbone``, ``num_objects``, ``num_classes`` for a recognised network."""
    if kind == "segmenter":
        return {"kind": kind, "arch": variant, "backbone": None, "num_classes": count,
                "num_objects": None if count is None else count - 1}  # fmt: skip
    arch = {"estimator": "posenet", "refiner": "refiner"}.get(kind or "")
    return {"kind": kind, "arch": arch, "backbone": variant if kind == "estimator" else None,
            "num_objects": count, "num_classes": None}  # fmt: skip


def _read(path: PathLike) -> _Contents:
    """Read and identify a checkpoint; anything malformed becomes a :class:`CheckpointError`."""
    try:
        return _read_unchecked(path)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: {e})") from e


def _read_unchecked(path: PathLike) -> _Contents:
    payload = _torch_load(path)
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        version = payload.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise CheckpointError(
                f"{path}: {FORMAT} format version {version!r} is not supported (this code reads <= {VERSION})"
            )
        raw = payload.get("state_dict")
        if not _is_tensor_mapping(raw):
            raise CheckpointError(f"{path}: {FORMAT} checkpoint without a valid 'state_dict'")
        sd = remap_state_dict(raw)
        ident = _identify(sd, published=False)
        meta = {k: v for k, v in payload.items() if k != "state_dict"}
        if meta.get("kind") not in KINDS:
            raise CheckpointError(f"{path}: {FORMAT} checkpoint with unknown kind {meta.get('kind')!r}")
        return _Contents(sd, meta, ident, True)
    raw = payload
    if isinstance(payload, Mapping) and not _is_tensor_mapping(payload):
        # tolerate {"state_dict": {...}, ...} / {"model": {...}, ...} training snapshots
        for key in ("state_dict", "model", "model_state_dict"):
            if _is_tensor_mapping(payload.get(key)):
                raw = payload[key]
                break
        else:
            raise CheckpointError(
                f"{path}: neither a state_dict (a mapping of tensors) nor a {FORMAT} checkpoint; "
                f"top-level keys: {sorted(map(str, payload))[:8]}"
            )
    if not _is_tensor_mapping(raw):
        raise CheckpointError(f"{path}: expected a state_dict or a {FORMAT} checkpoint, got {type(payload).__name__}")
    sd = remap_state_dict(raw)
    if any("cnn.model." in k for k in raw):  # published estimator naming
        published = True
    else:  # refiner and SegNet keys are the same in both layouts
        published = not any(k.startswith("cnn.") for k in sd)
    ident = _identify(sd, published=published)
    if ident.kind is None or (ident.kind == "segmenter" and ident.variant == "compact"):
        published = False
    return _Contents(sd, _raw_metadata(ident, published=published), ident, False)


def _describe(contents: _Contents) -> str:
    ident = contents.identity
    if contents.own_format:
        m = contents.meta
        return f"a {FORMAT} {m.get('kind')} checkpoint holding {ident.text}"
    return ident.text


def _fmt_keys(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], path: PathLike, what: str, contents: _Contents) -> None:
    """Strict key/shape check with a readable error, then copy the tensors (``assign``)."""
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [
        f"{k} (file {list(sd[k].shape)} vs model {list(expected[k].shape)})"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshaped:
        parts = [f"{path}: does not fit {what}."]
        if missing:
            parts.append(f"{len(missing)} missing keys: {_fmt_keys(missing)}.")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_fmt_keys(unexpected)}.")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped keys: {_fmt_keys(misshaped, 3)}.")
        parts.append(f"The file looks like {_describe(contents)}.")
        raise CheckpointError(" ".join(parts))
    full: dict[str, torch.Tensor] = {}
    for k, ref in expected.items():
        v = sd.get(k)
        if v is None:  # optional BN counter (torch 0.4-era files)
            v = torch.zeros((), dtype=torch.long)
        elif v.is_floating_point() and ref.is_floating_point():
            v = v.to(ref.dtype)
        full[k] = v
    model.load_state_dict(full, strict=True, assign=True)


def _finish(model: nn.Module, meta: dict[str, Any], device: torch.device | str) -> nn.Module:
    model.metadata = CheckpointMeta.from_dict(meta)
    return model.to(device).eval()


def _check_kind(contents: _Contents, kind: str, path: PathLike, what: str, count: int | None) -> int:
    """Raise unless the file holds ``kind``; return the object / class count of the file."""
    ident = contents.identity
    if ident.kind != kind or (contents.own_format and contents.meta.get("kind") != kind):
        # build the requested model on the meta device just to name the differing keys
        guess = count or ident.count or 21 + (kind == "segmenter")
        _load_strict(_meta_model(kind, None, guess), contents.state_dict, path, what, contents)
        raise CheckpointError(f"{path}: expected {what} but the file looks like {_describe(contents)}")
    assert ident.count is not None
    return ident.count


# ----------------------------------------------------------------------------------------------
# public loaders

_WHAT = {"estimator": "a DenseFusion estimator", "refiner": "a DenseFusion refiner", "segmenter": "a segmenter"}
_VARIANT_NAME = {"estimator": "color backbone", "segmenter": "segmenter arch"}


def _load(path: PathLike, kind: str, count: int | None, device: torch.device | str) -> nn.Module:
    """Read ``path``, check that it holds ``kind`` with ``count`` objects / classes, build and fill the model."""
    contents = _read(path)
    what = _WHAT[kind]
    k = _check_kind(contents, kind, path, what, count)
    unit, param = ("classes", "num_classes") if kind == "segmenter" else ("objects", "num_objects")
    if count is not None and count != k:
        raise CheckpointError(f"{path}: holds {what} for {k} {unit} but {param}={count} was requested")
    variant = None
    if kind != "refiner":
        key, known = ("backbone", COLOR_BACKBONES) if kind == "estimator" else ("arch", SEGMENTER_ARCHS)
        variant = contents.meta.get(key) or contents.identity.variant
        if variant not in known:
            raise CheckpointError(
                f"{path}: unknown {_VARIANT_NAME[kind]} {variant!r} (known: {sorted(known)}); "
                f"the file looks like {_describe(contents)}"
            )
    model = _meta_model(kind, variant, k)
    described = ", ".join(x for x in (variant, f"{k} {unit}") if x)
    _load_strict(model, contents.state_dict, path, f"{what} ({described})", contents)
    return _finish(model, {**contents.meta, **_counts_meta(kind, k, variant)}, device)


def load_estimator(
    path: PathLike, num_objects: int | None = None, device: torch.device | str = "cpu"
) -> DenseFusionEstimator:
    """Load a pose estimator (published ``pose_model_*.pth`` or a :data:`FORMAT` file), in eval mode.

    Args:
        path: checkpoint file.
        num_objects: expected number of objects; ``None`` reads it from the file
            (published: ``conv4_c.weight.shape[0]``).
        device: where to put the model.

    Returns:
        :class:`DenseFusionEstimator` with ``.metadata`` (a :class:`CheckpointMeta`).

    Raises:
        CheckpointError: unreadable file, wrong kind, wrong object count, or key/shape mismatch.
    """
    return _load(path, "estimator", num_objects, device)


def load_refiner(path: PathLike, num_objects: int | None = None, device: torch.device | str = "cpu") -> DenseFusionRefiner:
    """Load a pose refiner (published ``pose_refine_model_*.pth`` or a :data:`FORMAT` file), in eval mode.

    ``num_objects=None`` reads it from the file (published: ``conv3_r.weight.shape[0] / 4``).
    Raises :class:`CheckpointError` like :func:`load_estimator`.
    """
    return _load(path, "refiner", num_objects, device)


def load_segmenter(path: PathLike, num_classes: int | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """Load a segmenter (a :data:`FORMAT` file, or a raw ``vanilla_segmentation`` SegNet state_dict).

    ``num_classes`` (objects + background) is read from the file when ``None``.
    Raises :class:`CheckpointError` like :func:`load_estimator`.
    """
    return _load(path, "segmenter", num_classes, device)


def read_metadata(path: PathLike) -> CheckpointMeta:
    """Everything but the weights: kind, arch/backbone, counts, object names, normalisation, ...

    For published raw files the values are inferred: ``format`` is ``"published"``,
    normalisation is :data:`~densefusion_ros.models.transforms.PUBLISHED_NORMALIZATION`, and for
    21 / 13 objects the YCB-Video / LineMOD object names and 1000 / 500 points are filled in and
    listed under ``guessed``. ``description`` says what the file looks like.
    """
    contents = _read(path)
    meta = dict(contents.meta)
    ident = contents.identity
    if contents.own_format and ident.kind == meta.get("kind") and ident.count is not None:
        # counts always come from the weights
        variant = meta.get("backbone") if ident.kind == "estimator" else meta.get("arch")
        meta.update(_counts_meta(ident.kind, ident.count, variant or ident.variant))
    meta["description"] = _describe(contents)
    return CheckpointMeta.from_dict(meta)


# ----------------------------------------------------------------------------------------------
# saving


def _kind_of(model: nn.Module) -> str:
    if isinstance(model, DenseFusionEstimator):
        return "estimator"
    if isinstance(model, DenseFusionRefiner):
        return "refiner"
    if isinstance(model, (CompactSegNet, SegNet)):
        return "segmenter"
    raise TypeError(f"cannot save a {type(model).__name__}; expected an estimator, refiner or segmenter")


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    kind: str | None = None,
    num_points: int | None = None,
    object_names: list[str] | tuple[str, ...] | None = None,
    normalization: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    half: bool = False,
    input_scale: float | None = None,
) -> Path:
    """Write ``model`` in this package's format (see module docstring); returns the path.

    Values not given are taken from the model's :func:`metadata_of` (set by the loaders), so a
    loaded model re-saves with its metadata, keys unknown to :class:`CheckpointMeta` included.
    ``normalization`` must be known one way or the other: it is what makes the weights usable.
    The file is written atomically (temporary file + rename).

    Args:
        path: output file.
        model: :class:`DenseFusionEstimator`, :class:`DenseFusionRefiner` or a segmenter
            (DataParallel / ``torch.compile`` wrappers are unwrapped).
        kind: ``"estimator"``, ``"refiner"`` or ``"segmenter"``; checked against the model type.
        num_points: points per sample used in training (the node samples as many).
        object_names: one name per object index (``len == num_objects``).
        normalization: ``{"scale", "mean", "std"}``, see :mod:`.transforms`.
        training: free-form dict (data, command line, epochs, ...); plain Python values only.
        metrics: free-form dict of evaluation results.
        half: store floating-point weights as float16 (half the file size; the loaders cast
            them back to the model's float32, so inference runs as before within ~1e-3).
        input_scale: segmenters only: the image scale they were trained at (``--seg-scale``);
            the pipeline resizes frames by it before segmenting (default: as before, else 1).
    """
    model = unwrap_model(model)
    actual = _kind_of(model)
    if kind is not None and kind != actual:
        raise ValueError(f"kind={kind!r} but the model is a {actual} ({type(model).__name__})")
    old = metadata_of(model)
    normalization = normalization if normalization is not None else old.normalization
    if normalization is None:
        raise ValueError("normalization is required (e.g. transforms.PUBLISHED_NORMALIZATION or IMAGENET_NORMALIZATION)")
    if actual == "segmenter":
        counts = _counts_meta(actual, int(model.num_classes), "segnet" if isinstance(model, SegNet) else "compact")
    else:
        counts = _counts_meta(actual, int(model.num_objects), getattr(model, "backbone_name", None))
    num_objects = counts["num_objects"]
    if object_names is None:
        object_names = old.object_names
    if object_names is not None:
        object_names = [str(n) for n in object_names]
        if len(object_names) != num_objects:
            raise ValueError(f"{len(object_names)} object_names for {num_objects} objects")
    payload = {
        **old.extra,
        "format": FORMAT,
        "version": VERSION,
        **counts,
        "num_points": int(num_points) if num_points is not None else old.num_points,
        "object_names": object_names,
        "normalization": check_normalization(normalization),
        "training": dict(training if training is not None else old.training),
        "metrics": dict(metrics if metrics is not None else old.metrics),
        **({"input_scale": float(input_scale or old.input_scale or 1.0)} if actual == "segmenter" else {}),
        "state_dict": OrderedDict(
            (k, v.detach().cpu().to(torch.float16 if half and v.is_floating_point() else v.dtype).clone())
            for k, v in model.state_dict().items()
        ),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
