"""Everything that knows TensorFlow Serving: on-disk layout, the client, requests, signatures."""
