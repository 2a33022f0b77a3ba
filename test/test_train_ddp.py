"""DDP training on CPU (gloo) with two processes: one step keeps the replicas identical."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from densefusion_ros.models import unwrap_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, dataset: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    from densefusion_ros.train import trainer

    parser = trainer.configure_parser(__import__("argparse").ArgumentParser())
    args = parser.parse_args([
        "--stage", "estimator", "--dataset", dataset, "--out", out, "--epochs", "1", "--device", "cpu",
        "--threads", "1", "--no-progress", "--num-points", "48", "--num-model-points", "80",
        "--epoch-samples", "4", "--batch-size", "2", "--test-samples", "2",
    ])  # fmt: skip
    t = trainer.Trainer(trainer.TrainConfig.from_args(args))
    assert t.di.world_size == world and t.di.rank == rank
    assert isinstance(t.stage.model, torch.nn.parallel.DistributedDataParallel)
    init = {k: v.detach().clone() for k, v in unwrap_model(t.stage.model).state_dict().items()}
    try:
        t.fit()
        final = unwrap_model(t.stage.model).state_dict()
        torch.save({"init": init, "final": final, "samples": t.state.samples_seen}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        t.close()


def test_ddp_gloo_two_ranks_stay_identical(toy_dataset, tmp_path):
    dataset = toy_dataset
    out = tmp_path / "out"
    out.mkdir()
    # fork: the children inherit the imported modules (spawn would re-import torch in each,
    # ~10 s on 2 cores); each rank runs with one intra-op thread, so no OpenMP pool is forked.
    import torch._dynamo  # noqa: F401  (imported once here instead of by each rank's Adam)

    mp.start_processes(_worker, args=(2, _free_port(), str(dataset), str(out)), nprocs=2, join=True, start_method="fork")
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    changed = 0
    for k, v in r0["final"].items():
        # DDP averages the gradients; the trainer broadcasts rank 0's BatchNorm statistics
        # before testing and saving: the replicas stay equal
        assert torch.allclose(v.float(), r1["final"][k].float(), atol=1e-6), k
        changed += int(v.is_floating_point() and not torch.equal(v, r0["init"][k]))
    assert changed > 10  # a step happened
    assert r0["samples"] == r1["samples"] == 4
    # only rank 0 writes checkpoints and logs
    assert (out / "estimator_current.pth").is_file() and (out / "train_log.csv").is_file()
