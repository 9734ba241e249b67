#!/usr/bin/env bash
# The fast test tier: every module, in two worker processes, each test under 90 s
# (tests/conftest.py). The heavy tier: scripts/test.sh -m slow. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec python -m pytest -m "not slow" -q -n "${CONNECTOFLY_TEST_WORKERS:-2}" --dist loadfile --durations=10 "$@"
