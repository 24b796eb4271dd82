"""Example pipelines that use tfx-serving-ext's components."""
