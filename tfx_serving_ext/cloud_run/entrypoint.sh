#!/bin/sh
# Entrypoint of the model images tfx-serving-ext builds for Cloud Run and Knative.
#
# The stock tensorflow/serving entrypoint hard-codes gRPC 8500 and REST 8501 and ignores $PORT,
# the one port Cloud Run routes traffic to. This one serves REST on $PORT (8080 when unset),
# gRPC on $GRPC_PORT (8500 by default) moved off $PORT when the two would collide, and the
# model at $MODEL_BASE_PATH/$MODEL_NAME. Arguments given to the container (Cloud Run `args`)
# are passed through to the server. tensorflow_model_server listens on all interfaces by
# default and has no flag to choose one; set MODEL_SERVER_HOST only for a server that has a
# --host flag (the tfx-serving-ext embedded server binds 127.0.0.1 unless told otherwise).
# `exec` replaces this shell so the server is PID 1 and receives SIGTERM from the platform.
set -eu

MODEL_NAME="${MODEL_NAME:-model}"
MODEL_BASE_PATH="${MODEL_BASE_PATH:-/models}"
REST_PORT="${PORT:-8080}"
GRPC_PORT="${GRPC_PORT:-8500}"

for value in "$REST_PORT" "$GRPC_PORT"; do
    case "$value" in
        '' | *[!0-9]*)
            echo "tfx-serving-ext entrypoint: port '$value' is not a number (PORT=${PORT:-}, GRPC_PORT=${GRPC_PORT})" >&2
            exit 64
            ;;
    esac
done

if [ "$GRPC_PORT" -eq "$REST_PORT" ]; then
    if [ "$REST_PORT" -lt 65535 ]; then
        GRPC_PORT=$((REST_PORT + 1))
    else
        GRPC_PORT=$((REST_PORT - 1))
    fi
fi

set -- \
    --port="$GRPC_PORT" \
    --rest_api_port="$REST_PORT" \
    --model_name="$MODEL_NAME" \
    --model_base_path="$MODEL_BASE_PATH/$MODEL_NAME" \
    "$@"
if [ -n "${MODEL_SERVER_HOST:-}" ]; then
    set -- --host="$MODEL_SERVER_HOST" "$@"
fi

echo "tfx-serving-ext entrypoint: REST on port $REST_PORT, gRPC on port $GRPC_PORT, model $MODEL_NAME" >&2
exec "${MODEL_SERVER:-tensorflow_model_server}" "$@"
