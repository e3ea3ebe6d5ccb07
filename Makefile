# The function's build recipe. `sam build` runs it (template.yaml: BuildMethod makefile) in a
# copy of src/ with ARTIFACTS_DIR set; the tests and benchmarks run the same recipe for this
# machine's architecture (LAMBDA_PLATFORM=x86_64-manylinux2014) to get the artifact they start.
#
#   make build-ChatKitFunction ARTIFACTS_DIR=/tmp/function   # from src/, arm64 by default

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
LAMBDA_PLATFORM ?= aarch64-manylinux2014

.PHONY: build-ChatKitFunction
build-ChatKitFunction:
	LAMBDA_PLATFORM="$(LAMBDA_PLATFORM)" "$(ROOT)/scripts/build-function" "$(CURDIR)" "$(ARTIFACTS_DIR)"
