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
# `python -m handlers.lambda_streaming`, with the garbage collector paused before the first
# import: init only creates objects that live as long as the process, so its collections would
# walk them for nothing. The loop freezes them and starts the collector once init is done
# (`collector_paused`).
exec "$python" -c 'import gc; gc.disable(); import runpy
runpy.run_module("handlers.lambda_streaming", run_name="__main__", alter_sys=True)'
