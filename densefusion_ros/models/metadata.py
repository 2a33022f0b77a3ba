"""What a checkpoint says about its network, typed: :class:`CheckpointMeta`, and :func:`metadata_of`.

Files keep the plain-dict form (:func:`~densefusion_ros.models.checkpoint.save_checkpoint`
writes it, old files carry it); :meth:`CheckpointMeta.from_dict` reads either form and keeps
keys it does not know in :attr:`CheckpointMeta.extra`, and :meth:`CheckpointMeta.to_dict` gives
the dict back. Loaded models carry it as ``model.metadata``; :func:`metadata_of` is the one way
to read it from a model (a model built in code carries an empty one; a plain dict set by hand is
read as a dict form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CheckpointMeta", "metadata_of"]


@dataclass(frozen=True)
class CheckpointMeta:
    """The metadata of one checkpoint, in the manner of torchvision's ``Weights.meta``.

    Attributes:
        kind: ``"estimator"``, ``"refiner"`` or ``"segmenter"`` (``None``: not recognised).
        arch: ``"posenet"``, ``"refiner"``, or the segmenter architecture (``"segnet"``, ``"compact"``).
        backbone: the estimator's colour backbone (e.g. ``"psp_resnet18"``, ``"compact"``).
        num_objects: objects the network knows.
        num_classes: segmenter classes (objects + background).
        num_points: points per instance used in training (the pipeline samples as many).
        object_names: one name per object index.
        normalization: image normalisation ``{"scale", "mean", "std"}``
            (see :mod:`densefusion_ros.models.transforms`); ``None`` when unknown.
        input_scale: segmenters: the image scale they were trained at (the pipeline resizes
            frames by it); ``None`` when the file does not say (full size).
        training: free-form record of the training run (command, data, epochs, hardware, ...).
        metrics: free-form evaluation results.
        dataset: published files: the dataset their object count implies (``"ycb"``, ``"linemod"``).
        format: ``"densefusion_ros"``, ``"published"`` or ``"state_dict"``.
        version: the ``densefusion_ros`` format version (``None`` for other formats).
        guessed: names of the fields inferred from published defaults rather than read.
        description: what the file looks like (set by ``read_metadata``).
        extra: keys of the dict form that this class does not know, kept as read.
    """

    kind: str | None = None
    arch: str | None = None
    backbone: str | None = None
    num_objects: int | None = None
    num_classes: int | None = None
    num_points: int | None = None
    object_names: tuple[str, ...] | None = None
    normalization: Mapping[str, Any] | None = None
    input_scale: float | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    format: str | None = None
    version: int | None = None
    guessed: tuple[str, ...] = ()
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointMeta:
        """Read the dict form (a file's keys but ``state_dict``); unknown keys go to :attr:`extra`."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("object_names") is not None:
            values["object_names"] = tuple(str(n) for n in values["object_names"])
        values["guessed"] = tuple(values.get("guessed") or ())
        values["training"] = dict(values.get("training") or {})
        values["metrics"] = dict(values.get("metrics") or {})
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The dict form: every field (tuples as lists), then the :attr:`extra` keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v) for k, v in out.items()}
        return {**out, **dict(self.extra)}


def metadata_of(model: Any) -> CheckpointMeta:
    """The :class:`CheckpointMeta` of a model (empty when it carries none)."""
    meta = getattr(model, "metadata", None)
    if isinstance(meta, CheckpointMeta):
        return meta
    return CheckpointMeta.from_dict(meta or {})
