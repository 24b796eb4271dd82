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


class SavedModelError(ValueError):
    """The directory does not hold a readable SavedModel with the requested tag set."""


def is_saved_model_dir(path: str | os.PathLike) -> bool:
    """Returns True when `path` directly holds a saved_model.pb or saved_model.pbtxt."""
    path = Path(path)
    return (path / SAVED_MODEL_PB).is_file() or (path / SAVED_MODEL_PBTXT).is_file()


def find_serving_model_dir(model_uri: str | os.PathLike) -> Path:
    """Returns the SavedModel directory inside a Model artifact's URI.

    Accepts the TFX Trainer layout (`<uri>/Format-Serving/`), a bare SavedModel directory, and
    the legacy Estimator layout (`<uri>/serving_model_dir/export/<name>/<timestamp>/`).

    Raises:
        SavedModelError: no SavedModel is found under `model_uri`.
    """
    root = Path(model_uri)
    for candidate in (root / TRAINER_SERVING_SUBDIR, root):
        if is_saved_model_dir(candidate):
            return candidate
    export_root = root / "serving_model_dir" / "export"
    if export_root.is_dir():
        exports = sorted(p for p in export_root.glob("*/*") if is_saved_model_dir(p))
        if exports:
            return exports[-1]
    raise SavedModelError(
        f"No SavedModel found under {root}: expected {root / TRAINER_SERVING_SUBDIR}/"
        f"{SAVED_MODEL_PB} (TFX Trainer layout) or {root}/{SAVED_MODEL_PB}. "
        "Pass the Model artifact produced by a Trainer or a directory written by "
        "tf.saved_model.save."
    )


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
