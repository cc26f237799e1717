"""Several processes: 2 CPU ranks with gloo. Each rank scores its shard of the validation set; the
merged confusion matrix (and top-k counts) must equal the single-process evaluation exactly."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcv.train.data.datasets import ImageDataset
from dlcv.runtime.datasets import LayoutOptions, open_dataset
from dlcv.train.evaluate import eval_loader, evaluate
from dlcv.train.registry import create_model, list_models

from tests.runtime.datasets.fixtures import write_camvid, write_cmp_facade, write_imagefolder

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(root, arch: str, spec: PreprocessSpec, options: LayoutOptions, seed: int = 0):
    """The same model (seeded) and validation set in every process."""
    data = open_dataset(root, options=options)
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=data.info.num_classes, width=0.0625)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval(), ImageDataset(data.samples("val"), data, data.info, spec), data.info


def _rank_worker(rank: int, port: int, jobs: list, out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from dlcv.train.distributed import init_distributed, shutdown

    ctx, device = init_distributed("cpu")
    try:
        for name, *job in jobs:
            model, val, info = _build(*job)
            loader = eval_loader(val, batch_size=2, ctx=ctx)
            result = evaluate(model, loader, info, torch.device(device), ctx=ctx)
            result["shard"] = len(loader.sampler)
            with open(os.path.join(out_dir, f"{name}.{rank}.json"), "w") as f:
                json.dump(result, f)
    finally:
        shutdown(ctx)


def test_merged_metrics_equal_single_process_evaluation(tmp_path):
    # odd-sized sets (shards of 5 = 3 + 2, 9 = 5 + 4); cmp-facade mixes image sizes; classification merges top-k
    cmp = write_cmp_facade(tmp_path / "cmp", base=9, extended=6)
    cls = write_imagefolder(tmp_path / "cls", per_class=(1, 3))
    jobs = [
        ("cmp", str(cmp), "fcn8s", PreprocessSpec(), LayoutOptions(split_sizes=(5, 5, 5))),
        ("cls", str(cls), "vgg16_bn", PreprocessSpec(resize="resize", size=(32, 32)), LayoutOptions()),
    ]
    # fork: the ranks inherit the imported modules (a spawned interpreter re-imports torch, seconds each)
    list_models()  # import every model module once, before forking
    mp.start_processes(_rank_worker, args=(_free_port(), jobs, str(tmp_path)), nprocs=WORLD, join=True, start_method="fork")
    for name, *job in jobs:
        model, val, info = _build(*job)
        single = json.loads(json.dumps(evaluate(model, eval_loader(val, batch_size=2), info, torch.device("cpu"))))
        ranks = [json.loads((tmp_path / f"{name}.{r}.json").read_text()) for r in range(WORLD)]
        assert sum(r.pop("shard") for r in ranks) == len(val)  # each image scored once, no padding
        assert ranks[0] == ranks[1] == single, name
        assert single["count"] > 0


@pytest.mark.slow
def test_torchrun_trains_with_ddp_and_scores_like_one_process(tmp_path):
    data = write_camvid(tmp_path / "data", counts=(4, 3, 0))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), "-m", "dlcv.train",
           "fcn8s", "--data", str(data), "--width", "0.0625", "--epochs", "2", "--batch-size", "2",
           "--device", "cpu", "--out", str(run), "--overlays", "1", "--no-tensorboard", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("best val mIoU") == 1  # rank 0 reports and writes
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt", "log.csv", "overlays"]
    ckpt = load_checkpoint(run / "last.pt")
    assert len(ckpt["train_state"]["rng"]) == WORLD
    dataset = open_dataset(data)
    val = ImageDataset(dataset.samples("val"), dataset, dataset.info, PreprocessSpec.from_dict(ckpt["preprocess"]))
    single = evaluate(model_from_checkpoint(ckpt), eval_loader(val, batch_size=1), dataset.info, torch.device("cpu"))
    merged = ckpt["metrics"]["val"]
    assert merged["confusion_matrix"] == single["confusion_matrix"] and merged["miou"] == single["miou"]
