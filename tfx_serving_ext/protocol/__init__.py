"""What TF Serving's API is: status codes and errors, tensors and REST JSON, signatures, SavedModel
discovery, versions on disk and model config files. Depends on nothing else in the package."""
