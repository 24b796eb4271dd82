"""Loading a SavedModel's signatures as TF Serving would: the TF2 loader, else the TF1 loader.

TF Serving's C++ loader reads TF 1.x-era exports that TF2's Python loader refuses (old GraphDef
producers, ref-typed tensors, a `shape {}` placeholder that meant "unknown"); the v1 loader in a
Session of the model's own graph reads them. `load_signatures` tries TF2 first and says which
loader served the model; when both fail, the error names both loaders and why each refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from tfx_serving_ext.protocol.errors import ServingError, from_exception

logger = logging.getLogger(__name__)

TF2_LOADER = "the TF2 loader (tf.saved_model.load)"
TF1_LOADER = "the TF1 loader (tf.compat.v1.saved_model.loader.load in a Session)"


def load_signatures(
    path: Path, tags: list[str], signature_defs: dict[str, meta_graph_pb2.SignatureDef]
) -> tuple[object, dict, str]:
    """Returns (the loaded model, its signature callables by name, the loader that loaded it).

    Each callable takes keyword tensors and returns a dict of eager tensors by output alias.
    The loaded model must be kept alive as long as the callables are used (it owns the
    variables).

    Raises:
        ServingError: the load's TF status code (INTERNAL otherwise), naming both loaders.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path), tags=tags)
    except Exception as tf2_exc:
        try:
            session_model = _SessionModel(path, tags, signature_defs)
        except Exception as tf1_exc:
            raise load_error(
                path,
                tf1_exc,
                f"{TF2_LOADER} failed: {first_error_line(str(tf2_exc))}; "
                f"{TF1_LOADER} failed: {first_error_line(str(tf1_exc))}",
            ) from tf1_exc
        logger.info(
            "SavedModel %s loaded with %s (%s refused it: %s)",
            path,
            TF1_LOADER,
            TF2_LOADER,
            first_error_line(str(tf2_exc)),
        )
        return session_model, session_model.signatures, TF1_LOADER
    logger.info("SavedModel %s loaded with %s", path, TF2_LOADER)
    return loaded, dict(loaded.signatures), TF2_LOADER


def load_error(path: Path, exc: BaseException, detail: str) -> ServingError:
    """Returns the ServingError for a failed load: the TF status code, INTERNAL otherwise."""
    import tensorflow as tf

    code = from_exception(exc).code if isinstance(exc, tf.errors.OpError) else "INTERNAL"
    return ServingError(code, f"Failed to load SavedModel from {path}: {detail}")


class _SessionModel:
    """A SavedModel loaded by the TF1 loader into a Session of its own graph.

    Each signature is a callable like a TF2 concrete function's: keyword tensors in, a dict of
    eager tensors (by output alias) out. Session.run is thread-safe.
    """

    def __init__(self, path: Path, tags: list[str], signature_defs: dict):
        import tensorflow as tf

        self.graph = tf.Graph()
        # config=None: the Session takes the process's threading settings (tf.config.threading).
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            tf.compat.v1.saved_model.loader.load(self.session, tags, str(path))
        self.signatures = {
            name: _SessionSignature(self.session, signature)
            for name, signature in signature_defs.items()
        }

    def __del__(self):
        session = getattr(self, "session", None)
        if session is not None:
            session.close()


class _SessionSignature:
    """One signature of a `_SessionModel`, called as a TF2 signature function is."""

    def __init__(self, session, signature: meta_graph_pb2.SignatureDef):
        self._session = session
        self._inputs = {alias: info.name for alias, info in signature.inputs.items()}
        self._outputs = {alias: info.name for alias, info in signature.outputs.items()}

    def __call__(self, **arguments) -> dict:
        import tensorflow as tf

        unknown = set(arguments) - set(self._inputs)
        if unknown:
            raise TypeError(f"unexpected signature inputs: {sorted(unknown)}")
        feeds = {self._inputs[alias]: np.asarray(value) for alias, value in arguments.items()}
        aliases = sorted(self._outputs)
        values = self._session.run([self._outputs[a] for a in aliases], feed_dict=feeds)
        return {alias: tf.constant(value) for alias, value in zip(aliases, values, strict=True)}


def first_error_line(text: str) -> str:
    """Returns the line of a TF error that says what went wrong, not where the graph was built."""
    text = text.strip()
    skip = ("Graph execution error", "Detected at node", "<stack traces")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith(skip)
    ]
    return lines[0][:500] if lines else text[:500]
