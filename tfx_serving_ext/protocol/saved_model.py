"""Reads SavedModels the way TF Serving does: from the protos on disk, without running a graph."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
SERVE_TAG = "serve"
# TFX Trainer writes the exported model under this sub-directory of the Model artifact.
TRAINER_SERVING_SUBDIR = "Format-Serving"
OLD_TRAINER_SERVING_SUBDIR = "serving_model_dir"  # Model artifacts written before TFX 0.22


class SavedModelError(ValueError):
    """The directory does not hold a readable SavedModel with the requested tag set."""


def is_saved_model_dir(path: str | os.PathLike) -> bool:
    """Returns True when `path` directly holds a saved_model.pb or saved_model.pbtxt."""
    path = Path(path)
    return (path / SAVED_MODEL_PB).is_file() or (path / SAVED_MODEL_PBTXT).is_file()


def find_serving_model_dir(model_uri: str | os.PathLike) -> Path:
    """Returns the SavedModel directory inside a Model artifact's URI, wherever TFX put it.

    The layouts are TFX's own (`tfx.utils.path_utils.serving_model_path`), tried in order:
    the Keras Trainer's `<uri>/Format-Serving/`; the Estimator Trainer's
    `<uri>/Format-Serving/export/<exporter>/<timestamp>/` (the newest timestamp when the
    exporter kept several); the same two under `serving_model_dir/` (Model artifacts of TFX
    before 0.22); a bare SavedModel directory (`<uri>/saved_model.pb`); and a pushed copy or a
    TF Serving base path (`<uri>/<version>/`, the highest numeric version).

    Raises:
        SavedModelError: no SavedModel is found under `model_uri`; the message names every
            layout tried.
    """
    root = Path(model_uri)
    tried: list[str] = []
    for serving_dir in (TRAINER_SERVING_SUBDIR, OLD_TRAINER_SERVING_SUBDIR):
        found = _trainer_layout(root, serving_dir, tried)
        if found is not None:
            return found
    tried.append(f"{root}/{SAVED_MODEL_PB} (a bare SavedModel)")
    if is_saved_model_dir(root):
        return root
    tried.append(f"{root}/<version>/{SAVED_MODEL_PB} (a pushed copy or a TF Serving base path)")
    versions = _numeric_subdirs(root)
    if versions:
        return versions[-1]
    raise SavedModelError(
        f"No SavedModel found under {root}. Tried the layouts TFX writes: "
        + "; ".join(tried)
        + ". Pass the Model artifact produced by a Trainer, a pushed model directory or a "
        "directory written by tf.saved_model.save."
    )


def _trainer_layout(root: Path, serving_dir: str, tried: list[str]) -> Path | None:
    """Returns the SavedModel of a Trainer layout under `root/serving_dir`, or None."""
    base = root / serving_dir
    tried.append(f"{base}/{SAVED_MODEL_PB} (Keras Trainer)")
    tried.append(f"{base}/export/<exporter>/<timestamp>/{SAVED_MODEL_PB} (Estimator Trainer)")
    if not base.is_dir():
        return None
    from tfx.utils import path_utils

    try:
        path = Path(path_utils.serving_model_path(str(root), serving_dir != TRAINER_SERVING_SUBDIR))
    except RuntimeError:
        # TFX wants exactly one exporter and one timestamp; an exporter that kept several
        # exports (LatestExporter keeps five) serves its newest, as TF Serving would.
        path = None
        for exporter in sorted(p for p in (base / "export").iterdir() if p.is_dir()):
            exports = _numeric_subdirs(exporter)
            if exports:
                path = exports[-1]
    return path if path is not None and is_saved_model_dir(path) else None


def _numeric_subdirs(path: Path) -> list[Path]:
    """Returns the sub-directories of `path` named by a number that hold a SavedModel, in order."""
    if not path.is_dir():
        return []
    found = [p for p in path.iterdir() if p.name.isdigit() and is_saved_model_dir(p)]
    return sorted(found, key=lambda p: int(p.name))


def read_saved_model(saved_model_dir: str | os.PathLike) -> saved_model_pb2.SavedModel:
    """Returns the parsed SavedModel proto of `saved_model_dir`.

    Raises:
        SavedModelError: the file is missing or is not a SavedModel proto.
    """
    path = Path(saved_model_dir)
    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / SAVED_MODEL_PB, path / SAVED_MODEL_PBTXT
    try:
        if pb.is_file():
            saved_model.ParseFromString(pb.read_bytes())
        elif pbtxt.is_file():
            from google.protobuf import text_format

            text_format.Parse(pbtxt.read_text(), saved_model)
        else:
            raise SavedModelError(f"{path} holds no {SAVED_MODEL_PB}: not a SavedModel directory")
    except SavedModelError:
        raise
    except Exception as exc:  # protobuf raises DecodeError / ParseError and friends
        raise SavedModelError(f"{path}: {SAVED_MODEL_PB} cannot be parsed ({exc})") from exc
    return saved_model


def read_meta_graph(
    saved_model_dir: str | os.PathLike, tags: Iterable[str] = (SERVE_TAG,)
) -> meta_graph_pb2.MetaGraphDef:
    """Returns the MetaGraphDef whose tag set equals `tags` (TF Serving loads `{"serve"}`).

    Raises:
        SavedModelError: no meta graph carries exactly that tag set.
    """
    wanted = set(tags)
    saved_model = read_saved_model(saved_model_dir)
    available = []
    for meta_graph in saved_model.meta_graphs:
        tag_set = set(meta_graph.meta_info_def.tags)
        if tag_set == wanted:
            return meta_graph
        available.append(sorted(tag_set))
    raise SavedModelError(
        f"{saved_model_dir}: no meta graph with tag set {sorted(wanted)}; "
        f"the SavedModel has {available}. Export the model with the 'serve' tag."
    )


def read_signature_defs(
    saved_model_dir: str | os.PathLike, tags: Iterable[str] = (SERVE_TAG,)
) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Returns the SignatureDefs of the meta graph tagged `tags`, keyed by signature name.

    TF Serving hides the internal `__saved_model_init_op` entry, and so does this.
    """
    meta_graph = read_meta_graph(saved_model_dir, tags)
    return {
        name: signature
        for name, signature in meta_graph.signature_def.items()
        if name != "__saved_model_init_op"
    }


_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})


def _has_variables(saved_model: saved_model_pb2.SavedModel) -> bool:
    for meta_graph in saved_model.meta_graphs:
        if any(n.WhichOneof("kind") == "variable" for n in meta_graph.object_graph_def.nodes):
            return True
        graph = meta_graph.graph_def
        if any(node.op in _VARIABLE_OPS for node in graph.node):
            return True
        for function in graph.library.function:
            if any(node.op in _VARIABLE_OPS for node in function.node_def):
                return True
    return False


def check_variables_present(saved_model_dir: str | os.PathLike) -> None:
    """Returns when the SavedModel's variables are all on disk: the index and every data shard.

    A cheap check that needs no graph run: a model whose graph holds variables but whose
    `variables/` lost its index or a shard cannot load in TF Serving, whatever its
    saved_model.pb says.

    Raises:
        SavedModelError: the index or a shard is missing, or the index cannot be read.
    """
    import tensorflow as tf

    path = Path(saved_model_dir)
    if not _has_variables(read_saved_model(path)):
        return
    prefix = path / "variables" / "variables"
    index = prefix.with_name("variables.index")
    if not index.is_file():
        raise SavedModelError(
            f"{path} has variables but no {index.relative_to(path)}: TF Serving cannot load it. "
            "Export the model again (the copy lost its variables)."
        )
    shards = sorted(prefix.parent.glob("variables.data-*-of-*"))
    counts = {name.name.rsplit("-of-", 1)[1] for name in shards}
    expected = {f"variables.data-{i:05d}-of-{c}" for c in counts for i in range(int(c))}
    missing = sorted(expected - {s.name for s in shards}) if counts else ["variables.data-*"]
    if missing:
        raise SavedModelError(
            f"{path} is missing variable shard(s) {missing}: TF Serving cannot load it. "
            "Export the model again (the copy is incomplete)."
        )
    try:
        tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise SavedModelError(
            f"{path}: the variables index cannot be read ({exc}); export the model again"
        ) from exc
