#!/usr/bin/env bash
# The main job: a fly walks 2 s on flat ground with the CPG baseline; writes
# outputs/<run>/walk.mp4 and summary.json. Extra arguments go to 'connectofly walk'.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec connectofly walk "$@"
