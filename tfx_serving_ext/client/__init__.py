"""ServingClient: talks to any TF Serving (embedded or real) over gRPC or REST."""
