#!/usr/bin/env bash
# The test suite (fast tests; add '-m slow' for the heavier ones). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec python -m pytest -m "not slow" -q --durations=25 "$@"
