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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("forward", "bptt", "fixture"))
    parser.add_argument("--stimulus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extent", type=int, default=2, help="fixture lattice extent")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"forward": forward, "bptt": bptt, "fixture": fixture}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
