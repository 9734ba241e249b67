#!/usr/bin/env bash
# The main job, closed loop: the fly's compound eyes see a target, two optic lobes
# built from the flyvis connectome process the images, a descending readout of
# their output types steers the walking legs toward it; writes
# outputs/<run>/walk.mp4 (3-D view, eye images, optic-lobe activity, descending
# units) and summary.json. Extra arguments go to 'connectofly render' and
# override these defaults (e.g. --seed 0, --task follow_object, --controller
# visual_taxis). Seed 8 (target 62° to the left) is one of the 19 of 20 benchmark
# layouts where the connectome agent reaches the target (docs/closed_loop.md);
# seed 0 (target 88° to the right) is the one it misses.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec connectofly render --task visual_taxis --controller connectome --duration 3 --seed 8 "$@"
