#!/bin/sh
# AWS_LAMBDA_EXEC_WRAPPER for the managed python3.x runtime, which starts its runtime as
#   run-streaming.sh /var/lang/bin/python3.13 /var/runtime/bootstrap.py
# Its loop cannot stream responses, so we keep its interpreter ($1) and run ours instead
# (handlers/lambda_streaming.py), which puts on sys.path what the runtime's bootstrap would:
# the task root, the layers (/opt/python...) and the runtime directory. Without the wrapper
# (an empty AWS_LAMBDA_EXEC_WRAPPER, e.g. under `sam local invoke`), the function's Handler
# (handlers.lambda_buffered.handler) answers buffered.
set -eu

task_root="${LAMBDA_TASK_ROOT:-$(pwd)}"
python=python3
case "${1:-}" in
    */python* | python*) python="$1" ;;
esac

cd "$task_root"
export PYTHONUNBUFFERED=1
exec "$python" -m handlers.lambda_streaming
