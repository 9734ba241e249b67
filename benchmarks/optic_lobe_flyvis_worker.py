"""flyvis side of ``optic_lobe_vs_flyvis.py``: runs inside the flyvis venv.

Python 3.11 with torch 2.13.0 (CPU) and flyvis 1.2.0; imports nothing from
connectofly. Subcommands (each prints one JSON line on stdout):

* ``forward``: build flyvis's default network (extent 15), save its parameters,
  relax it for 1 s of grey, time ``Network.simulate`` on ``stimulus.npy`` at
  batch 1 (first sample) and at the full batch, save the full responses.
* ``bptt``: time one training step (forward from the grey steady state, loss =
  mean squared voltage over all neurons and frames, backward, Adam update).
* ``fixture``: at a small ``--extent``, save flyvis's parameters, its grey steady
  state and its full responses to ``stimulus.npy`` in one ``.npz`` (the parity
  fixture of the regular test suite).
* ``checkpoint``: at a small ``--extent``, build flyvis's default solver parts
  (network, flow decoder, Adam optimizer, activity penalty) from its default
  config, take ``--steps`` training steps on ``stimulus.npy`` against a random
  flow target as ``MultiTaskSolver.train`` does, write the checkpoint with
  ``MultiTaskSolver.checkpoint`` itself (file ``<out>/model/chkpts/chkpt_00000``),
  then the trained network's grey steady state and responses to
  ``stimulus.npy`` (``checkpoint_responses.npz``, with flyvis's parameter keys
  for checking the layout a reader derives).

PyPI's Linux torchvision wheels are CUDA builds that fail to load next to CPU
torch; flyvis imports torchvision only in its image renderer (``BoxEye``),
which this benchmark does not use, so that import is served by a stub whose
attributes do not exist.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import types
from argparse import Namespace
from pathlib import Path

import numpy as np


def _stub_torchvision() -> None:
    class Unavailable(types.ModuleType):
        def __getattr__(self, name: str):
            raise AttributeError(f"torchvision is stubbed out in this benchmark ({name})")

    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules[name] = Unavailable(name)


_stub_torchvision()
import torch  # noqa: E402
from flyvis.network import Network  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ordered_unique(pairs) -> list:
    seen: dict = {}
    for p in pairs:
        seen.setdefault(p, None)
    return list(seen)


def save_params(net: Network, path: Path) -> None:
    """Per-type and per-edge-type parameters with their keys (flyvis groups by
    first appearance: node order for types, edge order for edge types)."""
    nodes, edges = net.connectome.nodes, net.connectome.edges
    cell_types = [t.decode() for t in ordered_unique(nodes.type[:].tolist())]
    edge_types = ordered_unique(
        zip(
            [t.decode() for t in edges.source_type[:].tolist()],
            [t.decode() for t in edges.target_type[:].tolist()],
        )
    )
    params = dict(net.named_parameters())
    np.savez(
        path,
        cell_types=np.array(cell_types),
        edge_types=np.array([f"{s}>{t}" for s, t in edge_types]),
        bias=params["nodes_bias"].detach().numpy(),
        time_const=params["nodes_time_const"].detach().numpy(),
        syn_strength=params["edges_syn_strength"].detach().numpy(),
    )


def time_runs(fn, repeats: int) -> tuple[float, list[float]]:
    """Fastest of ``repeats`` runs (robust to other load on the machine), and all."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def forward(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    net = Network()
    build_s = time.perf_counter() - start
    save_params(net, args.out / "flyvis_params.npz")
    rss_built = peak_rss_mib()
    movies = torch.from_numpy(np.load(args.stimulus))[:, :, None, :]  # (B, T, 1, cols)
    result = {"build_s": build_s, "rss_after_build_mib": rss_built}
    for batch in (1, movies.shape[0]):
        with torch.no_grad():
            state = net.steady_state(1.0, args.dt, batch)
            x = movies[:batch]

            def run(x=x, state=state):
                return net.simulate(x, args.dt, initial_state=state)

            run()  # warm-up
            t, times = time_runs(run, args.repeats)
            responses = run().numpy()
        np.save(args.out / f"flyvis_b{batch}.npy", responses)
        result[f"forward_b{batch}_s"] = t
        result[f"forward_b{batch}_all_s"] = times
        result[f"peak_rss_after_b{batch}_mib"] = peak_rss_mib()
    return result


def bptt(args: argparse.Namespace) -> dict:
    net = Network()
    rss_built = peak_rss_mib()
    movies = torch.from_numpy(np.load(args.stimulus))[: args.batch, : args.steps, None, :]
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    state = net.steady_state(1.0, args.dt, args.batch)

    def train_step() -> float:
        optimizer.zero_grad()
        net.stimulus.zero(args.batch, args.steps)
        net.stimulus.add_input(movies)
        activity = net(net.stimulus(), args.dt, state=state)
        loss = (activity**2).mean()
        loss.backward()
        optimizer.step()
        return float(loss)

    train_step()  # warm-up
    t, times = time_runs(train_step, args.repeats)
    return {
        "bptt_s": t,
        "bptt_all_s": times,
        "rss_after_build_mib": rss_built,
        "peak_rss_mib": peak_rss_mib(),
    }


def fixture(args: argparse.Namespace) -> dict:
    connectome = Namespace(
        type="ConnectomeFromAvgFilters", file="fib25-fib19_v2.2.json",
        extent=args.extent, n_syn_fill=1,
    )
    net = Network(connectome=connectome)
    save_params(net, args.out / "params.npz")
    movies = torch.from_numpy(np.load(args.stimulus))[:, :, None, :]
    with torch.no_grad():
        steady = net.steady_state(1.0, args.dt, movies.shape[0])
        responses = net.simulate(movies, args.dt, initial_state=steady).numpy()
    params = dict(np.load(args.out / "params.npz"))
    np.savez_compressed(
        args.out / "fixture.npz",
        extent=args.extent, dt=args.dt, stimulus=np.load(args.stimulus),
        steady=steady.nodes.activity[0].numpy(),
        responses=responses.reshape(*movies.shape[:2], -1), **params,
    )
    return {"n_nodes": int(responses.shape[-1])}


def checkpoint(args: argparse.Namespace) -> dict:
    """A few of flyvis's own training steps, saved by flyvis's own checkpoint code."""
    from flyvis.solver import MultiTaskSolver, Penalty
    from flyvis.task.tasks import init_decoder
    from flyvis.utils.config_utils import get_default_config

    import flyvis

    torch.manual_seed(0)
    config = get_default_config(path=str(Path(flyvis.__file__).parent / "config" / "solver.yaml"), overrides=[
        "task_name=flow", "ensemble_and_network_id=0000/000",
        f"network.connectome.extent={args.extent}",
        f"scheduler.lr_net.start={args.lr}", f"scheduler.lr_dec.start={args.lr}",
    ])
    net = Network(**config.network)
    decoder = init_decoder(config.task.decoder, net.connectome)
    optimizer = MultiTaskSolver._init_optimizer(config.optim, net, decoder)
    penalty = Penalty(config.penalizer, net)
    movies = torch.from_numpy(np.load(args.stimulus))[:, :, None, :]
    n_samples, n_frames = movies.shape[:2]
    steady = net.steady_state(t_pre=0.5, dt=args.dt, batch_size=n_samples, value=0.5)
    target = None
    losses = []
    for iteration in range(args.steps):  # the body of MultiTaskSolver.train's batch loop
        net.stimulus.zero(n_samples, n_frames)
        net.stimulus.add_input(movies)
        optimizer.zero_grad()
        activity = net(net.stimulus(), args.dt, state=steady)
        flow = decoder["flow"](activity)
        if target is None:
            target = torch.randn(flow.shape, generator=torch.Generator().manual_seed(1))
        loss = (((flow - target) ** 2).sum(dim=(1, 2, 3))).sqrt().mean()  # flyvis's l2norm
        loss.backward(retain_graph=True)
        optimizer.step()
        penalty(activity=activity, iteration=iteration)
        losses.append(float(loss))

    # MultiTaskSolver.checkpoint on a stand-in for the solver: what it reads of self.
    from datamate import Directory

    model_dir = args.out / "model"
    solver = Namespace(
        _last_chkpt_ind=-1, _curr_chkpt_ind=-1, _val_loss=float("inf"), iteration=args.steps,
        network=net, decoder=decoder, optimizer=optimizer, penalty=penalty, checkpoints=[],
        checkpoint_path=model_dir / "chkpts", dir=Directory(model_dir),
        task=Namespace(dataset=Namespace(dt=args.dt), val_data=None, val_batch=None, train_data=None, train_batch=None),
        test=lambda **kwargs: np.float64(losses[-1]),  # flyvis's test returns a numpy mean
    )
    solver.checkpoint_path.mkdir(parents=True, exist_ok=True)
    MultiTaskSolver.checkpoint(solver)

    with torch.no_grad():
        steady = net.steady_state(1.0, args.dt, n_samples)
        responses = net.simulate(movies, args.dt, initial_state=steady).numpy()
    save_params(net, args.out / "params.npz")
    keys = {
        "syn_count_keys": np.array([f"{s}>{t}@{du},{dv}" for s, t, du, dv in net.edge_params.syn_count.keys]),
        "syn_strength_keys": np.array([f"{s}>{t}" for s, t in net.edge_params.syn_strength.keys]),
    }
    np.savez_compressed(
        args.out / "checkpoint_responses.npz",
        extent=args.extent, dt=args.dt, stimulus=np.load(args.stimulus),
        steady=steady.nodes.activity[0].numpy(),
        responses=responses.reshape(n_samples, n_frames, -1),
        losses=np.array(losses), **keys, **dict(np.load(args.out / "params.npz")),
    )
    return {"losses": losses, "n_nodes": int(responses.shape[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("forward", "bptt", "fixture", "checkpoint"))
    parser.add_argument("--stimulus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extent", type=int, default=2, help="fixture lattice extent")
    parser.add_argument("--lr", type=float, default=1e-3, help="checkpoint: learning rate of the training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"forward": forward, "bptt": bptt, "fixture": fixture, "checkpoint": checkpoint}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
