"""Subcommands of `tfx-serving-ext`: one module each, discovered by `tfx_serving_ext.cli`."""
