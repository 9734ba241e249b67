#!/usr/bin/env bash
# The main job, closed loop: the fly's compound eye sees a target, the vision
# baseline steers the walking legs toward it; writes outputs/<run>/walk.mp4 (3-D
# view + eye images) and summary.json. Extra arguments go to 'connectofly walk'
# and override these defaults (e.g. --task walk --controller cpg).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec connectofly walk --task visual_taxis --controller visual_taxis --duration 3 "$@"
