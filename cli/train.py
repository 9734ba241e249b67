"""``connectofly train``: PPO on the MJX env, with checkpoints, TensorBoard, a curve and a video.

    connectofly train --algo ppo --env Walk --updates 60
    connectofly train --algo ppo --env Walk --run-name my-run --updates 120   # resumes my-run
    connectofly train --algo ppo --env VisualTaxis --updates 150                # the ppo_mlp drive policy
    connectofly train --algo ppo --env VisualTaxis --policy connectome --updates 20   # fine-tune the DN readout
    connectofly train --algo ppo --curriculum VisualTaxis:40,FollowObject:80    # static, then moving target
    connectofly train --algo ppo --curriculum VisualTaxis:40,VisualTaxis@mixed:40   # flat, then rough ground
    connectofly train --algo bptt --env VisualTaxis --policy connectome   # ... by backprop through MJX

``Walk`` and ``Turn`` train an MLP over the 48 joint actions on the batched
MJX body. ``VisualTaxis`` and ``FollowObject`` train an MLP from the
photoreceptors to the walker's 2-D descending drive on the MuJoCo C body with
its eyes (:mod:`connectofly.training.ppo_drive`, episodes in worker
processes); they write ``policy.npz``, ``history.jsonl`` and
``learning_curve.png``, start over each run, and take their defaults from
``ppo_drive.DRIVE_PPO`` unless a flag is given. ``--curriculum`` trains them
through stages ``ENV[@TERRAIN]:UPDATES`` in turn, the policy carried over (and
then sets ``--env`` to its last stage's). With ``--policy connectome``
they instead fine-tune the connectome agent's descending readout over its
optic lobes (``readout.npz``, defaults ``ppo_drive.READOUT_PPO``). ``--algo bptt``
(visual envs, ``--policy connectome`` only) fine-tunes the readout by
backprop through the eyes, optic lobes, CPG and MJX physics instead
(:mod:`connectofly.training.bptt_readout`; ``--num-envs`` rollouts of
``--horizon`` s per update, ``--gradient-window`` to truncate the gradient
through the body); it writes ``readout.npz``, ``history.jsonl``,
``learning_curve.png`` and ``summary.json`` and does not resume.

A run writes to ``OUTPUT_DIR/RUN_NAME/``: ``checkpoints/`` (orbax, the whole
training state), ``tensorboard/``, ``history.jsonl`` (one line per update),
``learning_curve.png``, ``eval.mp4`` (the policy's mean action after
training) and ``summary.json`` (with the evaluation of both the mean and the
sampled actions). Running again with the same run name resumes
from the latest checkpoint; the config must then be the same.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from connectofly.cli.checks import (
    check_folder, check_readout, non_negative_int, positive_float, positive_int, run_name,
)

log = logging.getLogger("connectofly")

DEFAULT_CONTROL_DT = 0.001  # s

ENVS = {"Walk": "walk", "Turn": "turn"}  # CLI env name -> MJX env task
DRIVE_ENVS = {"VisualTaxis": "visual_taxis", "FollowObject": "follow_object"}  # -> DriveEnv visual task
ENV_OF_TASK = {task: env for env, task in DRIVE_ENVS.items()}
ALGOS = ("ppo", "bptt")
PPO_UPDATES = 60


def add_parser(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a policy with PPO on the batched MJX env; checkpoints, TensorBoard, video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--algo", choices=ALGOS, default="ppo", help="training algorithm")
    train.add_argument("--env", choices=sorted(ENVS | DRIVE_ENVS), default=None,
                       help="Walk/Turn: joint actions on MJX; VisualTaxis/FollowObject: descending drive on the C body "
                            "(default Walk, or the last stage of --curriculum)")
    train.add_argument("--curriculum", default=None, metavar="ENV[@TERRAIN]:UPDATES,...",
                       help="visual envs, --algo ppo: train through these stages in turn, e.g. "
                            "VisualTaxis:40,FollowObject:80 (static, then moving target) or "
                            "VisualTaxis:40,VisualTaxis@mixed:40 (flat, then rough ground); replaces --updates")
    train.add_argument("--policy", choices=("mlp", "connectome"), default="mlp",
                       help="VisualTaxis/FollowObject: an MLP on the photoreceptors (ppo_mlp), or the connectome "
                            "agent's descending readout on its optic lobes, fine-tuned from --start-readout")
    train.add_argument("--start-readout", default=None,
                       help="--policy connectome: the readout.npz to start from, or 'rest' (ignores vision, walks "
                            "straight); default: the one embedded for the task")
    train.add_argument("--horizon", type=positive_float, default=0.3, help="--algo bptt: simulated seconds per rollout")
    train.add_argument("--gradient-window", type=positive_float, default=None,
                       help="--algo bptt: cut the gradient through the body's state every this many s (default: never)")
    train.add_argument("--updates", type=positive_int, default=None,
                       help="updates in all (a resumed PPO run continues to this); default 60 for PPO, 16 for BPTT")
    train.add_argument("--num-envs", type=positive_int, default=None, help="parallel worlds")
    train.add_argument("--unroll-length", type=positive_int, default=None, help="control steps per world per update")
    train.add_argument("--minibatches", type=positive_int, default=None, help="minibatches per epoch")
    train.add_argument("--epochs", type=positive_int, default=None, help="passes over each update's data")
    train.add_argument("--learning-rate", type=positive_float, default=None)
    train.add_argument("--initial-action-std", type=positive_float, default=None,
                       help="exploration noise of the untrained policy, in [-1, 1] action units")
    train.add_argument("--control-dt", type=control_step, default=DEFAULT_CONTROL_DT, help="seconds between policy actions (a multiple of 0.1 ms)")
    train.add_argument("--episode-duration", type=positive_float, default=None,
                       help="simulated seconds before an episode is truncated (default 0.5 on MJX, 3 for the visual tasks)")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--checkpoint-every", type=positive_int, default=10, help="updates between checkpoints")
    train.add_argument("--eval-seconds", type=positive_float, default=0.5, help="simulated seconds of the final evaluation rollout")
    train.add_argument("--output-dir", type=Path, default=Path("outputs"))
    train.add_argument("--run-name", type=run_name, default=None, help="folder of this run (default: ppo-<env>-<seed>); an existing one resumes")
    train.add_argument("--no-video", action="store_true", help="skip rendering the evaluation video")
    train.set_defaults(handler=run)


def control_step(text: str) -> float:
    """An argparse type: seconds between policy actions, a whole multiple of the physics step."""
    from connectofly.envs.fly_env import substeps_per_control

    seconds = positive_float(text)
    try:
        substeps_per_control(seconds)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seconds


COMPILE_CACHE = Path.home() / ".cache" / "connectofly" / "xla"


def configure_libraries() -> None:
    """Keep orbax's per-checkpoint INFO lines off the console, and cache compiled programs.

    The persistent XLA cache makes a resumed or repeated run skip the
    minutes-long compile of the update; ``JAX_COMPILATION_CACHE_DIR`` overrides it.
    """
    import jax

    logging.getLogger("absl").setLevel(logging.WARNING)
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))


def config_from_args(args: argparse.Namespace, base):
    """``base`` (a PPOConfig) with the PPO flags that were given."""
    from dataclasses import replace

    given = {
        "num_envs": args.num_envs, "unroll_length": args.unroll_length, "num_minibatches": args.minibatches,
        "epochs": args.epochs, "learning_rate": args.learning_rate, "initial_action_std": args.initial_action_std,
    }
    return replace(base, **{name: value for name, value in given.items() if value is not None})


def run_folder(args: argparse.Namespace) -> Path:
    """``OUTPUT_DIR/RUN_NAME`` (by default ``ALGO-ENV-seedSEED``), checked to be a folder that can be written."""
    return check_folder(args.output_dir / (args.run_name or f"{args.algo}-{args.env}-seed{args.seed}"), "--output-dir")


def check_same_run(run_dir: Path, run_config: dict) -> None:
    """Write the run's config, or check that a resumed run uses the same one."""
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in run_config.items() if saved.get(k) != v and k != "updates"}
        if changed:
            detail = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
            raise ValueError(f"{run_dir} was trained with another config ({detail}); use a new --run-name")
    path.write_text(json.dumps(run_config, indent=2) + "\n")


def parse_curriculum(text: str) -> list:
    """``"VisualTaxis:40,FollowObject@mixed:80"`` -> :class:`~connectofly.training.ppo_drive.Stage` s.

    Raises:
        ValueError: an item is not ``ENV[@TERRAIN]:UPDATES`` with a visual ENV, a
            known terrain and a positive whole number of updates.
    """
    from connectofly.training import ppo_drive

    stages = []
    for item in text.split(","):
        name, colon, updates = item.strip().rpartition(":")
        env, _, terrain = name.partition("@")
        if not colon or env not in DRIVE_ENVS or not updates.isdigit():
            raise ValueError(f"--curriculum: {item!r} is not ENV[@TERRAIN]:UPDATES with ENV one of "
                             f"{sorted(DRIVE_ENVS)} (e.g. VisualTaxis:40,FollowObject@mixed:80)")
        stages.append(ppo_drive.Stage(DRIVE_ENVS[env], int(updates), terrain or "flat"))
    ppo_drive.check_stages(stages)
    return stages


def run(args: argparse.Namespace) -> dict:
    args.stages = None
    if args.curriculum is not None:
        if args.algo != "ppo" or args.updates is not None:
            raise ValueError("--curriculum is for --algo ppo and gives each stage's updates (drop --updates)")
        args.stages = parse_curriculum(args.curriculum)
        last = ENV_OF_TASK[args.stages[-1].task]
        if args.env not in (None, last):
            raise ValueError(f"--env {args.env}, but the curriculum ends on {last}: the policy is for the last stage")
        args.env = last
    args.env = args.env or "Walk"
    if args.algo == "bptt":
        return run_bptt(args)
    args.updates = PPO_UPDATES if args.updates is None else args.updates
    if args.env in DRIVE_ENVS:
        return run_drive(args)
    if args.policy != "mlp" or args.start_readout is not None:
        raise ValueError(f"--policy connectome and --start-readout are for the visual envs {sorted(DRIVE_ENVS)}")
    from connectofly.envs.mjx_env import MjxEnv
    from connectofly.training.ppo import PPO, PPOConfig, config_dict, evaluate, plot_learning_curve, train

    configure_libraries()
    if args.episode_duration is None:
        args.episode_duration = 0.5
    config = config_from_args(args, PPOConfig())
    run_dir = run_folder(args)
    env = MjxEnv(ENVS[args.env], control_dt=args.control_dt, duration=args.episode_duration)
    ppo = PPO(env, config)
    run_config = {
        "algo": args.algo, "env": args.env, "seed": args.seed, "control_dt": args.control_dt,
        "episode_duration": args.episode_duration,
        "updates": args.updates, **config_dict(config),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    check_same_run(run_dir, run_config)
    log.info("PPO on %s: %d worlds x %d steps per update; compiling the update (minutes on a CPU)",
             args.env, config.num_envs, config.unroll_length)
    history_path = run_dir / "history.jsonl"
    result = train(
        ppo, args.updates, seed=args.seed, checkpoint_dir=run_dir / "checkpoints",
        checkpoint_every=args.checkpoint_every, log_dir=run_dir / "tensorboard", progress=True,
        history_path=history_path,
    )
    history = [json.loads(line) for line in history_path.read_text().splitlines()]
    plot_learning_curve(history, run_dir / "learning_curve.png", ("env_steps", "environment steps"), [
        ("reward_per_step", "reward per step", "training reward"),
        ("mean_forward_speed", "mm/s", "mean forward speed"),
    ])

    from connectofly.videos.writer import DEFAULT_FPS, DEFAULT_PLAYBACK_SPEED, frame_interval

    frame_every = max(1, round(frame_interval(DEFAULT_FPS, DEFAULT_PLAYBACK_SPEED) / env.control_dt))
    speed, eval_return, qpos = evaluate(ppo, result.state, args.eval_seconds, seed=args.seed, frame_every=frame_every)
    noisy_speed, noisy_return, _ = evaluate(ppo, result.state, args.eval_seconds, seed=args.seed, stochastic=True)
    first, last = history[: min(5, len(history))], history[-min(5, len(history)):]
    summary = {
        **run_config,
        "updates_done": int(result.state.update),
        "env_steps": history[-1]["env_steps"],
        "compile_seconds": result.compile_seconds,
        "seconds_per_update": result.seconds_per_update,
        "env_steps_per_second": config.steps_per_update / result.seconds_per_update,
        "reward_per_step_first_5": float(np.mean([r["reward_per_step"] for r in first])),
        "reward_per_step_last_5": float(np.mean([r["reward_per_step"] for r in last])),
        "eval_seconds": args.eval_seconds,
        "eval_mean_forward_speed_mm_s": speed,  # the mean action (the video)
        "eval_return": eval_return,
        "eval_sampled_mean_forward_speed_mm_s": noisy_speed,  # actions sampled as in training
        "eval_sampled_return": noisy_return,
    }
    if not args.no_video:
        summary["video"] = str(render_policy(env, qpos, frame_every, run_dir / "eval.mp4"))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {run_dir}  (tensorboard --logdir {run_dir / 'tensorboard'})")
    return summary


def render_policy(env, qpos: np.ndarray, frame_every: int, path: Path) -> Path:
    """An MP4 of the recorded evaluation poses (the primitive body has no arena objects)."""
    from connectofly.videos.frames import FrameState
    from connectofly.videos.writer import write_video

    no_mocap = (np.zeros((0, 3)), np.zeros((0, 4)))
    frames = [FrameState(i * frame_every * env.control_dt, q, *no_mocap) for i, q in enumerate(qpos)]
    return write_video(env.model, frames, path, camera=env.body.index.camera, progress=True)


def run_drive(args: argparse.Namespace) -> dict:
    """PPO of the photoreceptor → descending-drive MLP on a visual task (C body, worker processes)."""
    from connectofly.training import ppo_drive
    from connectofly.training.ppo import config_dict

    config = config_from_args(args, ppo_drive.DRIVE_PPO if args.policy == "mlp" else ppo_drive.READOUT_PPO)
    duration = 3.0 if args.episode_duration is None else args.episode_duration
    stages = args.stages or [ppo_drive.Stage(DRIVE_ENVS[args.env], args.updates)]
    ppo_drive.check_stages(stages)  # before the run folder is made
    if args.start_readout not in (None, "rest"):
        check_readout(args.start_readout, "--start-readout")
    run_dir = run_folder(args)
    if (run_dir / "history.jsonl").exists():
        raise ValueError(f"{run_dir} already holds a drive-policy run (these do not resume); use a new --run-name")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_config = {"algo": args.algo, "env": args.env, "policy": args.policy, "seed": args.seed,
                  "episode_duration": duration, "updates": sum(stage.updates for stage in stages),
                  "curriculum": [stage._asdict() for stage in stages], **config_dict(config)}
    if args.policy == "connectome":
        run_config["start_readout"] = str(args.start_readout or "embedded")
    (run_dir / "config.json").write_text(json.dumps(run_config, indent=2) + "\n")
    log.info("PPO of the drive policy on %s: %d worlds x %d decisions of %.0f ms per update",
             ", then ".join(f"{s.task} ({s.terrain}, {s.updates} updates)" for s in stages),
             config.num_envs, config.unroll_length, 1e3 * ppo_drive.DECISION_DT)
    history = ppo_drive.train(stages, run_dir, config, seed=args.seed, duration=duration,
                              policy=args.policy, start_readout=args.start_readout)
    saved = run_dir / ("policy.npz" if args.policy == "mlp" else "readout.npz")
    last = history[-min(10, len(history)):]
    summary = {
        **run_config,
        "decisions": history[-1]["decisions"],
        "simulated_s": history[-1]["simulated_s"],
        "seconds_per_update": float(np.mean([row["seconds"] for row in history])),
        "reward_per_step_first": history[0]["reward_per_step"],
        "reward_per_step_last_10": float(np.mean([row["reward_per_step"] for row in last])),
        "task_success_per_decision_last_10": float(np.mean([row["task_success_per_decision"] for row in last])),
        "saved": str(saved),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if args.policy == "mlp":
        how = (f"connectofly bench --controllers ppo_mlp (after copying {saved.name} to "
               f"agents/weights/ppo_mlp_{DRIVE_ENVS[args.env]}.npz)")
    else:
        how = f"connectofly bench --controllers connectome --tasks {DRIVE_ENVS[args.env]} --readout {saved}"
    print(f"wrote {run_dir}; benchmark it with: {how}")
    return summary


def run_bptt(args: argparse.Namespace) -> dict:
    """BPTT of the connectome agent's descending readout through eyes, lobes and MJX physics."""
    from connectofly.training import bptt_readout

    if args.env not in DRIVE_ENVS or args.policy != "connectome":
        raise ValueError(f"--algo bptt trains --policy connectome on the visual envs {sorted(DRIVE_ENVS)}")
    if args.start_readout is not None:
        check_readout(args.start_readout, "--start-readout")
    given = {"updates": args.updates, "horizon": args.horizon, "batch": args.num_envs,
             "learning_rate": args.learning_rate, "seed": args.seed, "gradient_window": args.gradient_window}
    config = bptt_readout.BPTTConfig(DRIVE_ENVS[args.env], **{k: v for k, v in given.items() if v is not None})
    run_dir = run_folder(args)
    if (run_dir / "history.jsonl").exists():
        raise ValueError(f"{run_dir} already holds a run (BPTT runs do not resume); use a new --run-name")
    configure_libraries()
    log.info("BPTT of the readout on %s: %d rollouts of %.2f s per update; compiling (minutes on a CPU)",
             args.env, config.batch, config.horizon)
    summary = bptt_readout.run(config, run_dir, args.start_readout)
    print(json.dumps(summary, indent=2))
    print(f"wrote {run_dir}; benchmark it with: connectofly bench --controllers connectome --tasks "
          f"{config.task} --readout {run_dir / 'readout.npz'}")
    return summary
