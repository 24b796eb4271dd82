"""Offline checks of a SavedModel: signature rules, contract and baseline diffs, the in-process
model runner (the server's request semantics), warmup logs, and reading and sampling examples."""
