"""The serving volume TF Serving polls: version claims, staging, tree copy, retention, rollback,
labels, and push + verify."""
